"""The RAG index: documents, chunks, vectors, and keyword / vector / hybrid retrieval
(``retrieval.Retrieval``; what it returns is in ``records``).

    >>> index = RagIndex(db, embedding_model="paraphrase-MiniLM-L3-v2", dimension=384)
    >>> ref = index.add_document(text, title="Photosynthesis", embeddings=encoder)
    >>> index.hybrid_search("light reactions", encoder([query])[0], k=5)

Embeddings are computed by the caller (a list of vectors, one per chunk, or a callable
taking the chunk texts); this module never downloads or runs a model. One ``RagIndex`` is
bound to one embedding model; several instances can share a database, each with its own
model. Vector search keeps the model's vectors in memory as one normalised matrix, reloaded
only when ``embedding_models.revision`` shows that some connection changed them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from twin.storage import Backend
from twin.storage.bulk import insert_rows
from twin.storage.pipeline import execute_all, execute_at_commit
from twin.storage.timestamps import to_db, utc_now

from .chunking import Chunker, TextChunk
from .errors import (ChunkNotFoundError, DimensionMismatchError, DocumentNotFoundError,
                     EmbeddingCountError, InvalidDocumentError, ModelMismatchError)
from .records import ChunkInfo, Document, DocumentRef, IndexStats, SearchResult, content_hash
from .retrieval import Retrieval, Vector, positive_int
from .vectors import VectorMatrix, as_vector, to_blob

if TYPE_CHECKING:
    from .query_cache import RagQueryCache

_REGISTERED_DIMENSION = "SELECT dimension FROM embedding_models WHERE model = ?"
_WORD = re.compile(r"\S+")
_CHUNK_COLUMNS = ("chunk_id", "document_id", "chunk_index", "content", "start_offset", "end_offset",
                  "chunk_size", "overlap_size", "chunk_unit", "created_at")

__all__ = ["DEFAULT_DIMENSION", "DEFAULT_MODEL", "ChunkInfo", "Document", "DocumentRef", "IndexStats",
           "RagIndex", "SearchResult", "content_hash"]

DEFAULT_MODEL = "paraphrase-MiniLM-L3-v2"
DEFAULT_DIMENSION = 384


def configured_dimension(environ: "Mapping[str, str] | None" = None) -> int:
    """``RAG_VECTOR_DIM`` (seed 004), else ``DEFAULT_DIMENSION``; a clear error if malformed."""
    raw = (os.environ if environ is None else environ).get("RAG_VECTOR_DIM", "").strip()
    if not raw:
        return DEFAULT_DIMENSION
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"RAG_VECTOR_DIM must be a positive integer, got {raw!r}")
    return int(raw)

Embeddings = Sequence[Vector] | np.ndarray | Callable[[list[str]], Sequence[Vector] | np.ndarray]


def _metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidDocumentError("metadata must be a mapping (a JSON object)")
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocumentError(f"metadata is not JSON-serialisable: {exc}") from None


class RagIndex(Retrieval):
    """Documents, chunks and one embedding model's vectors in a migrated ``rag_index`` db."""

    def __init__(self, db: Backend, *, embedding_model: str = DEFAULT_MODEL,
                 dimension: int | None = None, chunker: Chunker | None = None,
                 track_queries: bool = True, prune_common_terms_from: int | None = 2000,
                 clock: Callable[[], datetime] = utc_now, cache: "RagQueryCache | None" = None) -> None:
        """Bind to ``db`` and one embedding model.

        Raises ``DimensionMismatchError`` if the database already holds vectors of
        ``embedding_model`` with another dimension. ``track_queries=False`` leaves
        ``query_count``/``last_queried`` alone (searches then never write).

        ``prune_common_terms_from``: once the index holds this many chunks, keyword queries
        drop the terms found in at least half of the chunks (unless every term is). FTS5's
        BM25 gives such terms an IDF of ~0, so the ranking does not change, but without
        them a query stops scoring nearly every chunk (10k chunks: ~30 ms down to ~1 ms).
        Chunks that matched only those terms, with scores of ~0, are no longer returned.
        ``None`` never prunes.

        ``dimension`` defaults to ``RAG_VECTOR_DIM`` (else 384); every stored or queried vector
        must have it. ``cache``: the optional Redis query cache (``RagQueryCache.from_env()``).
        """
        if not isinstance(embedding_model, str) or not embedding_model.strip():
            raise ValueError("embedding_model must be a non-empty string")
        self.db = db
        self.embedding_model = embedding_model
        self.dimension = positive_int("dimension", configured_dimension() if dimension is None else dimension)
        self.cache = cache
        self.chunker = chunker or Chunker()
        self.track_queries = track_queries
        self.prune_common_terms_from = (None if prune_common_terms_from is None else
                                        positive_int("prune_common_terms_from",
                                                      prune_common_terms_from))
        self._clock = clock
        self._matrix: VectorMatrix | None = None
        self._matrix_lock = threading.Lock()
        registered = self._registered_dimension(db.connection())
        if registered is not None and registered != self.dimension:
            raise DimensionMismatchError(
                f"model {embedding_model!r} is stored with dimension {registered}, not {dimension}")

    def __repr__(self) -> str:
        return (f"RagIndex(db={self.db.name!r}, embedding_model={self.embedding_model!r}, "
                f"dimension={self.dimension})")

    # -- writing --------------------------------------------------------------------------

    def add_document(self, content: str, *, title: str | None = None,
                     metadata: Mapping[str, Any] | None = None, document_type: str = "text",
                     source_path: str | None = None, source_url: str | None = None,
                     embeddings: Embeddings | None = None,
                     embedding_model: str | None = None) -> DocumentRef:
        """Store a document, its chunks and (optionally) one vector per chunk.

        Content already stored (same SHA-256) is not stored again: the existing document's
        id comes back with ``created=False`` and ``embeddings`` is neither called nor stored.
        ``embeddings`` is a sequence of vectors in chunk order (see ``chunker.split``) or a
        callable taking the list of chunk texts and returning them. ``embedding_model``, if
        given, names the model that produced them and must be the index's model.
        """
        if not isinstance(content, str) or not content.strip():
            raise InvalidDocumentError("document content must be a non-empty string")
        self._check_model(embedding_model)
        meta_json = _metadata_json(metadata)
        digest = content_hash(content)
        existing = self._document_with_hash(self.db.connection(), digest)
        if existing is not None:
            return DocumentRef(existing, False)
        chunks = self.chunker.split(content)
        # Computed before the write lock is taken: a model may take a while.
        vectors = self._vectors_for(chunks, embeddings)
        document_id = f"doc_{secrets.token_urlsafe(16)}"

        def write(conn: Any) -> DocumentRef:
            raced = self._document_with_hash(conn, digest)
            if raced is not None:
                return DocumentRef(raced, False)
            now = to_db(self._clock())
            # On PostgreSQL the rows go with the model's registration check, or the COMMIT:
            # no round trip of their own (a failing row fails the write all the same).
            execute_at_commit(
                conn,
                "INSERT INTO documents (document_id, title, content, document_type, source_path, "
                "source_url, content_hash, word_count, created_at, updated_at, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (document_id, title, content, document_type, source_path, source_url, digest,
                 len(_WORD.findall(content)), now, now, meta_json))
            insert_rows(conn, "chunks", _CHUNK_COLUMNS,
                        [(f"{document_id}:{c.index}", document_id, c.index, c.text, c.start, c.end,
                          c.size, self.chunker.overlap, self.chunker.unit, now) for c in chunks],
                        at_commit=True)
            if vectors is not None:
                self._register_model(conn, now)
                insert_rows(conn, "embeddings", ("chunk_id", "model", "dimension", "vector", "created_at"),
                            [(f"{document_id}:{c.index}", self.embedding_model, self.dimension,
                              to_blob(v), now) for c, v in zip(chunks, vectors)], at_commit=True)
            return DocumentRef(document_id, True)

        # Writers of the same content queue on one lock, so the second sees the first's row
        # (PostgreSQL would otherwise fail it on the unique content hash).
        return self.db.write(write, lock=f"rag:content:{digest}")

    def add_embeddings(self, chunk_id: str, vector: Vector, *,
                       embedding_model: str | None = None) -> None:
        """Store (or replace) the index model's vector for one chunk.

        Raises ``ChunkNotFoundError``, ``DimensionMismatchError``, ``ModelMismatchError``
        (``embedding_model`` given and not the index's) or ``InvalidVectorError``.
        """
        self._check_model(embedding_model)
        blob = to_blob(as_vector(vector, self.dimension))

        def write(conn: Any) -> None:
            exists = conn.execute("SELECT 1 FROM chunks WHERE chunk_id = ?", (chunk_id,)).fetchone()
            if exists is None:
                raise ChunkNotFoundError(chunk_id)
            now = to_db(self._clock())
            self._register_model(conn, now)
            conn.execute(
                "INSERT INTO embeddings (chunk_id, model, dimension, vector, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chunk_id, model) DO UPDATE SET "
                "dimension = excluded.dimension, vector = excluded.vector, "
                "created_at = excluded.created_at",
                (chunk_id, self.embedding_model, self.dimension, blob, now))

        self.db.write(write)

    def delete_document(self, document_id: str) -> int:
        """Delete a document with its chunks, vectors, statistics and FTS entries.

        Returns how many chunks went with it; raises ``DocumentNotFoundError``.
        """
        def write(conn: Any) -> int:
            chunk_count = conn.execute("SELECT count(*) FROM chunks WHERE document_id = ?",
                                       (document_id,)).fetchone()[0]
            # Foreign-key cascades remove chunks -> vectors and statistics; triggers remove
            # the chunks' FTS entries and bump the model revision (dropping cached matrices).
            deleted = conn.execute("DELETE FROM documents WHERE document_id = ?", (document_id,))
            if deleted.rowcount == 0:
                raise DocumentNotFoundError(document_id)
            return int(chunk_count)

        return self.db.write(write)

    # -- reading --------------------------------------------------------------------------

    def get_document(self, document_id: str) -> Document:
        """A document and its chunks (with statistics); raises ``DocumentNotFoundError``."""
        with self.db.transaction(immediate=False) as conn:
            doc = conn.execute("SELECT * FROM documents WHERE document_id = ?",
                               (document_id,)).fetchone()
            if doc is None:
                raise DocumentNotFoundError(document_id)
            rows = conn.execute(
                "SELECT c.chunk_id, c.chunk_index, c.content, c.start_offset, c.end_offset, "
                "       e.chunk_id IS NOT NULL AS has_embedding, "
                "       COALESCE(m.query_count, 0) AS query_count, m.last_queried "
                "  FROM chunks c "
                "  LEFT JOIN embeddings e ON e.chunk_id = c.chunk_id AND e.model = ? "
                "  LEFT JOIN embeddings_metadata m ON m.chunk_id = c.chunk_id "
                " WHERE c.document_id = ? ORDER BY c.chunk_index",
                (self.embedding_model, document_id)).fetchall()
        chunks = tuple(ChunkInfo(r["chunk_id"], r["chunk_index"], r["content"], r["start_offset"],
                                 r["end_offset"], bool(r["has_embedding"]), r["query_count"],
                                 r["last_queried"]) for r in rows)
        return Document(doc["document_id"], doc["title"], doc["content"], doc["document_type"],
                        doc["source_path"], doc["source_url"], doc["content_hash"],
                        doc["word_count"], json.loads(doc["metadata"] or "{}"),
                        doc["created_at"], doc["updated_at"], chunks)

    def stats(self) -> IndexStats:
        """Document, chunk and vector counts, registered models, retrievals counted."""
        with self.db.transaction(immediate=False) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM documents) AS documents, "
                "       (SELECT count(*) FROM chunks) AS chunks, "
                "       (SELECT count(*) FROM embeddings WHERE model = ?) AS embedded, "
                "       (SELECT COALESCE(sum(query_count), 0) FROM embeddings_metadata) AS queries",
                (self.embedding_model,)).fetchone()
            models = {r["model"]: r["dimension"] for r in conn.execute(
                "SELECT model, dimension FROM embedding_models ORDER BY model")}
        return IndexStats(row["documents"], row["chunks"], row["embedded"], models,
                          int(row["queries"]))  # sum() of a BIGINT is a Decimal on PostgreSQL

    # -- internals ------------------------------------------------------------------------

    def _check_model(self, embedding_model: str | None) -> None:
        if embedding_model is not None and embedding_model != self.embedding_model:
            raise ModelMismatchError(
                f"vectors from {embedding_model!r} cannot go into an index of "
                f"{self.embedding_model!r}")

    def _registered_dimension(self, conn: Any) -> int | None:
        row = conn.execute(_REGISTERED_DIMENSION, (self.embedding_model,)).fetchone()
        return None if row is None else int(row["dimension"])

    def _register_model(self, conn: Any, now: str) -> None:
        # One round trip on PostgreSQL: the registration and the read of what is registered.
        _, stored = execute_all(conn, [
            ("INSERT INTO embedding_models (model, dimension, created_at) VALUES (?, ?, ?) "
             "ON CONFLICT (model) DO NOTHING", (self.embedding_model, self.dimension, now)),
            (_REGISTERED_DIMENSION, (self.embedding_model,))])
        row = stored.fetchone()
        registered = None if row is None else int(row["dimension"])
        if registered != self.dimension:   # another process registered it meanwhile
            raise DimensionMismatchError(
                f"model {self.embedding_model!r} is stored with dimension {registered}, "
                f"not {self.dimension}")

    @staticmethod
    def _document_with_hash(conn: Any, digest: str) -> str | None:
        row = conn.execute("SELECT document_id FROM documents WHERE content_hash = ?",
                           (digest,)).fetchone()
        return None if row is None else row["document_id"]

    def _vectors_for(self, chunks: list[TextChunk], embeddings: Embeddings | None
                     ) -> list[np.ndarray] | None:
        if embeddings is None:
            return None
        if callable(embeddings):
            embeddings = embeddings([c.text for c in chunks])
        try:
            count = len(embeddings)
        except TypeError:
            raise EmbeddingCountError(
                "embeddings must be a sequence with one vector per chunk") from None
        if count != len(chunks):
            raise EmbeddingCountError(f"{count} embeddings for {len(chunks)} chunks")
        return [as_vector(v, self.dimension) for v in embeddings]
