"""Vector validation, the float32 storage format, and the in-memory similarity matrix."""

from __future__ import annotations

import numpy as np
import pytest

from twin.rag import DimensionMismatchError, InvalidVectorError
from twin.rag.vectors import VectorMatrix, as_vector, from_blob, to_blob, unit


def test_vectors_become_float32_arrays():
    vector = as_vector([1, 2, 3], 3)
    assert vector.dtype == np.float32 and vector.tolist() == [1.0, 2.0, 3.0]


def test_a_vector_of_another_dimension_is_a_dimension_mismatch():
    with pytest.raises(DimensionMismatchError, match="dimension 2.*has 3"):
        as_vector([1.0, 2.0], 3)


@pytest.mark.parametrize("bad", [[0.0, 0.0], [float("nan"), 1.0], [float("inf"), 1.0],
                                 [[1.0, 2.0]], ["a", "b"], None])
def test_zero_non_finite_nested_or_non_numeric_vectors_are_invalid(bad):
    with pytest.raises(InvalidVectorError):
        as_vector(bad, 2)


def test_blobs_are_little_endian_float32_and_round_trip():
    assert to_blob(np.array([1.0], dtype=np.float32)) == b"\x00\x00\x80\x3f"
    vector = np.array([0.25, -3.5, 1e-7], dtype=np.float32)
    assert from_blob(to_blob(vector)).tolist() == vector.tolist()


def test_the_matrix_ranks_rows_by_cosine_similarity():
    blobs = [to_blob(np.array(v, dtype=np.float32)) for v in ([10, 0], [1, 1], [0, 3], [-1, 0])]
    matrix = VectorMatrix.from_blobs("r1", [11, 12, 13, 14], blobs, 2)
    hits = matrix.top_k(unit(as_vector([1, 0], 2)), 3)
    assert [rowid for rowid, _ in hits] == [11, 12, 13]
    assert [score for _, score in hits] == pytest.approx([1.0, 2 ** -0.5, 0.0], abs=1e-6)


def test_asking_for_more_rows_than_stored_returns_them_all():
    matrix = VectorMatrix.from_blobs(None, [1, 2], [to_blob(np.ones(2, np.float32))] * 2, 2)
    assert len(matrix.top_k(unit(as_vector([1, 1], 2)), 10)) == 2
    assert VectorMatrix.empty(2).top_k(unit(as_vector([1, 1], 2)), 5) == []
