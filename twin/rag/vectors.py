"""Embedding vectors: validation, float32 blobs, and an in-memory matrix for cosine search.

Vectors are stored as little-endian float32 blobs (``4 * dimension`` bytes), whatever the
machine's byte order. Search keeps each model's vectors as one L2-normalised float32 matrix,
so a cosine-similarity query is a single matrix-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DimensionMismatchError, InvalidVectorError

_DTYPE = np.dtype("<f4")


def as_vector(values: Any, dimension: int) -> np.ndarray:
    """``values`` as a 1-D float32 array of ``dimension`` finite numbers, not all zero.

    Raises ``InvalidVectorError`` for anything else and ``DimensionMismatchError`` for a
    well-formed vector of the wrong length.
    """
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(f"not a vector of numbers: {exc}") from None
    if vector.ndim != 1:
        raise InvalidVectorError(f"a vector must be one-dimensional, got shape {vector.shape}")
    if vector.shape[0] != dimension:
        raise DimensionMismatchError(
            f"vector has dimension {vector.shape[0]}, the embedding model has {dimension}")
    if not np.all(np.isfinite(vector)):
        raise InvalidVectorError("vector contains NaN or infinity")
    if not np.any(vector):
        # Cosine similarity is undefined for the zero vector.
        raise InvalidVectorError("vector is all zeros")
    return vector


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (callers pass vectors checked by ``as_vector``)."""
    return vector / np.float32(np.linalg.norm(vector))


def to_blob(vector: np.ndarray) -> bytes:
    """The stored form: little-endian float32 bytes."""
    return vector.astype(_DTYPE, copy=False).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    """A stored vector back as a float32 array."""
    return np.frombuffer(blob, dtype=_DTYPE).astype(np.float32)


@dataclass(frozen=True, eq=False)
class VectorMatrix:
    """One model's vectors as of one revision: row ``i`` of ``matrix`` belongs to ``ids[i]``."""

    revision: str | None
    ids: np.ndarray       # int64 chunk row ids
    matrix: np.ndarray    # (n, dimension) float32, rows of length 1

    @classmethod
    def empty(cls, dimension: int, revision: str | None = None) -> "VectorMatrix":
        return cls(revision, np.empty(0, dtype=np.int64),
                   np.empty((0, dimension), dtype=np.float32))

    @classmethod
    def from_blobs(cls, revision: str | None, ids: Sequence[int], blobs: Sequence[bytes],
                   dimension: int) -> "VectorMatrix":
        """Build from stored rows, normalising every vector once here instead of per query."""
        if not ids:
            return cls.empty(dimension, revision)
        matrix = np.frombuffer(b"".join(blobs), dtype=_DTYPE).reshape(len(ids), dimension)
        matrix = matrix.astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.maximum(norms, np.finfo(np.float32).tiny)
        return cls(revision, np.asarray(ids, dtype=np.int64), matrix)

    def __len__(self) -> int:
        return len(self.ids)

    def top_k(self, query_unit: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` most similar rows as (id, cosine similarity), best first."""
        if k <= 0 or not len(self):
            return []
        scores = self.matrix @ query_unit
        if k < len(scores):
            # argpartition is O(n); only the k winners are sorted.
            best = np.argpartition(-scores, k - 1)[:k]
        else:
            best = np.arange(len(scores))
        best = best[np.lexsort((self.ids[best], -scores[best]))]
        return [(int(self.ids[i]), float(scores[i])) for i in best]
