"""The RAG index: documents, chunks, vectors, and keyword / vector / hybrid retrieval.

    >>> index = RagIndex(db, embedding_model="paraphrase-MiniLM-L3-v2", dimension=384)
    >>> ref = index.add_document(text, title="Photosynthesis", embeddings=encoder)
    >>> index.hybrid_search("light reactions", encoder([query])[0], k=5)

Embeddings are computed by the caller (a list of vectors, one per chunk, or a callable
taking the chunk texts); this module never downloads or runs a model. One ``RagIndex`` is
bound to one embedding model; several instances can share a database, each with its own
model. Vector search keeps the model's vectors in memory as one normalised matrix, reloaded
only when ``embedding_models.revision`` shows that some connection changed them.

Scores: keyword search returns the negated FTS5 ``bm25()`` (higher is better), vector
search the cosine similarity, hybrid search the reciprocal-rank-fusion score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from twin.storage import Database, OperationalError, is_busy_error
from twin.storage.timestamps import to_db, utc_now

from .chunking import Chunker, TextChunk
from .errors import (ChunkNotFoundError, DimensionMismatchError, DocumentNotFoundError,
                     EmbeddingCountError, InvalidDocumentError, ModelMismatchError)
from .fts_query import KeywordQuery, parse_query
from .fusion import reciprocal_rank_fusion
from .vectors import VectorMatrix, as_vector, to_blob, unit

log = logging.getLogger(__name__)

DEFAULT_MODEL = "paraphrase-MiniLM-L3-v2"
DEFAULT_DIMENSION = 384

Vector = Sequence[float] | np.ndarray
Embeddings = Sequence[Vector] | np.ndarray | Callable[[list[str]], Sequence[Vector] | np.ndarray]

_WORD = re.compile(r"\S+")

_RESULT_COLUMNS = """
    c.id, c.chunk_id, c.document_id, c.chunk_index, c.content, d.title
"""

_KEYWORD_SQL = f"""
SELECT {_RESULT_COLUMNS}, -f.rank AS score
  FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS f
  JOIN chunks c ON c.id = f.rowid
  JOIN documents d ON d.document_id = c.document_id
 ORDER BY f.rank, c.id
"""

_COUNT_MATCHES_UP_TO_SQL = """
SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)
"""

_ROWS_BY_ID_SQL = f"""
SELECT {_RESULT_COLUMNS}
  FROM chunks c JOIN documents d ON d.document_id = c.document_id
 WHERE c.id IN (SELECT value FROM json_each(?))
"""

_COUNT_QUERIES_SQL = """
UPDATE embeddings_metadata SET query_count = query_count + 1, last_queried = ?
 WHERE chunk_id IN (SELECT value FROM json_each(?))
"""


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """The id of a stored document; ``created`` is False when identical content existed."""

    document_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One retrieved chunk, its document, and its score (higher is better)."""

    chunk_id: str
    document_id: str
    chunk_index: int
    content: str
    title: str | None
    score: float


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """A stored chunk with its retrieval statistics."""

    chunk_id: str
    chunk_index: int
    content: str
    start_offset: int
    end_offset: int
    has_embedding: bool      # a vector of the index's model is stored
    query_count: int
    last_queried: str | None


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document and its chunks in order."""

    document_id: str
    title: str | None
    content: str
    document_type: str
    source_path: str | None
    source_url: str | None
    content_hash: str
    word_count: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    chunks: tuple[ChunkInfo, ...]


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Counts over the whole database; ``embedded_chunks`` counts this index's model only."""

    documents: int
    chunks: int
    embedded_chunks: int
    models: dict[str, int]    # every registered embedding model and its dimension
    total_queries: int        # retrievals counted over all chunks


def content_hash(content: str) -> str:
    """The dedupe key of a document: SHA-256 of its UTF-8 content, hex."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidDocumentError("metadata must be a mapping (a JSON object)")
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocumentError(f"metadata is not JSON-serialisable: {exc}") from None


def _result(row: Any, score: float) -> SearchResult:
    return SearchResult(row["chunk_id"], row["document_id"], row["chunk_index"], row["content"],
                        row["title"], float(score))


class RagIndex:
    """Documents, chunks and one embedding model's vectors in a migrated ``rag_index`` db."""

    def __init__(self, db: Database, *, embedding_model: str = DEFAULT_MODEL,
                 dimension: int = DEFAULT_DIMENSION, chunker: Chunker | None = None,
                 track_queries: bool = True, prune_common_terms_from: int | None = 2000,
                 clock: Callable[[], datetime] = utc_now) -> None:
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
        """
        if not isinstance(embedding_model, str) or not embedding_model.strip():
            raise ValueError("embedding_model must be a non-empty string")
        self.db = db
        self.embedding_model = embedding_model
        self.dimension = _positive_int("dimension", dimension)
        self.chunker = chunker or Chunker()
        self.track_queries = track_queries
        self.prune_common_terms_from = (None if prune_common_terms_from is None else
                                        _positive_int("prune_common_terms_from",
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
            conn.execute(
                "INSERT INTO documents (document_id, title, content, document_type, source_path, "
                "source_url, content_hash, word_count, created_at, updated_at, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (document_id, title, content, document_type, source_path, source_url, digest,
                 len(_WORD.findall(content)), now, now, meta_json))
            conn.executemany(
                "INSERT INTO chunks (chunk_id, document_id, chunk_index, content, start_offset, "
                "end_offset, chunk_size, overlap_size, chunk_unit, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(f"{document_id}:{c.index}", document_id, c.index, c.text, c.start, c.end,
                  c.size, self.chunker.overlap, self.chunker.unit, now) for c in chunks])
            if vectors is not None:
                self._register_model(conn, now)
                conn.executemany(
                    "INSERT INTO embeddings (chunk_id, model, dimension, vector, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(f"{document_id}:{c.index}", self.embedding_model, self.dimension,
                      to_blob(v), now) for c, v in zip(chunks, vectors)])
            return DocumentRef(document_id, True)

        return self.db.write(write)

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
        return IndexStats(row["documents"], row["chunks"], row["embedded"], models, row["queries"])

    # -- retrieval ------------------------------------------------------------------------

    def keyword_search(self, query: str, k: int = 10) -> list[SearchResult]:
        """The ``k`` chunks best matching ``query`` by FTS5 BM25 (any text is accepted)."""
        _positive_int("k", k)
        rows = self._keyword_rows(query, k)
        results = [_result(row, row["score"]) for row in rows]
        self._record_queries(results)
        return results

    def vector_search(self, vector: Vector, k: int = 10) -> list[SearchResult]:
        """The ``k`` chunks whose vectors are most cosine-similar to ``vector``."""
        _positive_int("k", k)
        hits = self._vector_hits(vector, k)
        rows = self._rows_by_id([rowid for rowid, _ in hits])
        results = [_result(rows[rowid], score) for rowid, score in hits if rowid in rows]
        self._record_queries(results)
        return results

    def hybrid_search(self, query: str, vector: Vector, k: int = 10, *, rrf_k: float = 60,
                      candidates: int | None = None) -> list[SearchResult]:
        """Keyword and vector rankings fused by reciprocal rank fusion.

        Each method contributes its top ``candidates`` (default ``max(4 * k, 50)``); the
        score is ``sum(1 / (rrf_k + rank))`` over the methods that found the chunk.
        """
        _positive_int("k", k)
        pool = _positive_int("candidates", candidates) if candidates is not None else max(4 * k, 50)
        vector_ids = [rowid for rowid, _ in self._vector_hits(vector, pool)]
        keyword_ids = [row["id"] for row in self._keyword_rows(query, pool)]
        fused = reciprocal_rank_fusion([keyword_ids, vector_ids], k=rrf_k, limit=k)
        rows = self._rows_by_id([rowid for rowid, _ in fused])
        results = [_result(rows[rowid], score) for rowid, score in fused if rowid in rows]
        self._record_queries(results)
        return results

    # -- internals ------------------------------------------------------------------------

    def _check_model(self, embedding_model: str | None) -> None:
        if embedding_model is not None and embedding_model != self.embedding_model:
            raise ModelMismatchError(
                f"vectors from {embedding_model!r} cannot go into an index of "
                f"{self.embedding_model!r}")

    def _registered_dimension(self, conn: Any) -> int | None:
        row = conn.execute("SELECT dimension FROM embedding_models WHERE model = ?",
                           (self.embedding_model,)).fetchone()
        return None if row is None else int(row["dimension"])

    def _register_model(self, conn: Any, now: str) -> None:
        conn.execute("INSERT INTO embedding_models (model, dimension, created_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (model) DO NOTHING", (self.embedding_model, self.dimension, now))
        registered = self._registered_dimension(conn)
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

    def _keyword_rows(self, query: str, limit: int) -> list[Any]:
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        parsed = parse_query(query)
        if parsed is None:
            return []
        return self.db.query(_KEYWORD_SQL, (self._prune_common_terms(parsed), limit))

    def _prune_common_terms(self, parsed: KeywordQuery) -> str:
        """The MATCH expression without the parts BM25 would weigh ~0 (see ``__init__``)."""
        threshold = self.prune_common_terms_from
        if threshold is None or len(parsed.parts) < 2:
            return parsed.expression()
        total = self.db.query_one("SELECT count(*) FROM chunks")[0]
        if total < threshold:
            return parsed.expression()
        # FTS5's bm25() clamps log((N - n + 0.5) / (n + 0.5)) to 1e-6 once n >= N / 2.
        half = (total + 1) // 2
        kept = [part for part in parsed.parts
                if self.db.query_one(_COUNT_MATCHES_UP_TO_SQL, (part, half))[0] < half]
        return parsed.expression(kept or None)

    def _vector_hits(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        query_unit = unit(as_vector(vector, self.dimension))
        return self._vectors().top_k(query_unit, k)

    def _vectors(self) -> VectorMatrix:
        """The model's vector matrix, reloaded only if the stored revision changed."""
        row = self.db.query_one("SELECT revision FROM embedding_models WHERE model = ?",
                                (self.embedding_model,))
        if row is None:
            return VectorMatrix.empty(self.dimension)
        cached = self._matrix
        if cached is not None and cached.revision == row["revision"]:
            return cached
        with self._matrix_lock:
            cached = self._matrix
            if cached is not None and cached.revision == row["revision"]:
                return cached
            loaded = self._load_matrix()
            self._matrix = loaded
            return loaded

    def _load_matrix(self) -> VectorMatrix:
        # One read transaction so the revision and the vectors come from the same snapshot.
        with self.db.transaction(immediate=False) as conn:
            revision = conn.execute("SELECT revision FROM embedding_models WHERE model = ?",
                                    (self.embedding_model,)).fetchone()
            rows = conn.execute(
                "SELECT c.id, e.vector FROM embeddings e JOIN chunks c ON c.chunk_id = e.chunk_id "
                "WHERE e.model = ? AND e.dimension = ?",
                (self.embedding_model, self.dimension)).fetchall()
        return VectorMatrix.from_blobs(None if revision is None else revision["revision"],
                                       [r[0] for r in rows], [r[1] for r in rows], self.dimension)

    def _rows_by_id(self, rowids: list[int]) -> dict[int, Any]:
        if not rowids:
            return {}
        return {row["id"]: row for row in self.db.query(_ROWS_BY_ID_SQL, (json.dumps(rowids),))}

    def _record_queries(self, results: list[SearchResult]) -> None:
        """Count one retrieval for each returned chunk, best-effort and without waiting.

        A search must not stall behind a long write (a bulk ingest holds the write lock for
        its whole transaction), so the update does not wait for the lock: when the
        database is busy these retrievals simply go uncounted.
        """
        if not self.track_queries or not results:
            return
        params = (to_db(self._clock()), json.dumps([r.chunk_id for r in results]))
        conn = self.db.connection()
        if conn.in_transaction:   # the caller's transaction: count inside it
            conn.execute(_COUNT_QUERIES_SQL, params)
            return
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute(_COUNT_QUERIES_SQL, params)
        except OperationalError as exc:
            if not is_busy_error(exc):
                raise
            log.debug("%s: database busy, %d retrievals not counted", self.db.name, len(results))
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.db.settings.busy_timeout_ms)}")

