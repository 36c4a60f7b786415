"""Retrieval from the RAG index: keyword (FTS5/BM25 on SQLCipher, full-text search ranked by
``ts_rank_cd`` on PostgreSQL), vector (cosine) and hybrid (reciprocal rank fusion) search, and
the in-memory vector matrix behind vector search.

Scores: keyword search returns the negated FTS5 ``bm25()`` or ``ts_rank_cd`` (higher is better
on both), vector search the cosine similarity, hybrid search the reciprocal-rank-fusion score.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any, Callable, Sequence

import numpy as np

from twin.storage import (Backend, OperationalError, StatementError, TransactionConflict,
                          is_busy_error)
from twin.storage.timestamps import to_db

from .fts_query import KeywordQuery, parse_query
from .fusion import reciprocal_rank_fusion
from .records import SearchResult
from .vectors import VectorMatrix, as_vector, unit

log = logging.getLogger(__name__)

Vector = Sequence[float] | np.ndarray

_RESULT_COLUMNS = """
    c.id, c.chunk_id, c.document_id, c.chunk_index, c.content, d.title
"""

# Per dialect. A query's parts are quoted phrases joined by OR (``fts_query``): FTS5's MATCH
# syntax, and also what websearch_to_tsquery reads ("..." a phrase, OR), which never raises.
# ts_rank_cd has no IDF and favours repeated words, so on PostgreSQL a chunk holding the whole
# query verbatim (the first parameter, case-insensitively; NULL for one word) gets 1 added: it
# ranks first, as the phrase's BM25 contribution makes it on SQLite. A tsquery phrase would
# not do: stop words keep their positions, so "rate the learning" matches "rate of learning".
_KEYWORD_SQL = {"sqlite": f"""
SELECT {_RESULT_COLUMNS}, -f.rank AS score
  FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS f
  JOIN chunks c ON c.id = f.rowid
  JOIN documents d ON d.document_id = c.document_id
 ORDER BY f.rank, c.id
""", "postgresql": f"""
SELECT {_RESULT_COLUMNS}, f.score
  FROM (SELECT c.id, ts_rank_cd(c.content_tsv, q)
                     + CASE WHEN strpos(lower(c.content), lower(?)) > 0 THEN 1 ELSE 0 END AS score
          FROM chunks c, websearch_to_tsquery('english', ?) AS q
         WHERE c.content_tsv @@ q ORDER BY score DESC, c.id LIMIT ?) AS f
  JOIN chunks c ON c.id = f.id
  JOIN documents d ON d.document_id = c.document_id
 ORDER BY f.score DESC, c.id
"""}

_COUNT_MATCHES_UP_TO_SQL = """
SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)
"""

# A list of ids: a JSON array on SQLite, an array parameter on PostgreSQL.
_ROWS_BY_ID_SQL = {"sqlite": f"""
SELECT {_RESULT_COLUMNS}
  FROM chunks c JOIN documents d ON d.document_id = c.document_id
 WHERE c.id IN (SELECT value FROM json_each(?))
""", "postgresql": f"""
SELECT {_RESULT_COLUMNS}
  FROM chunks c JOIN documents d ON d.document_id = c.document_id
 WHERE c.id = ANY(?)
"""}

_COUNT_QUERIES_SQL = {"sqlite": """
UPDATE embeddings_metadata SET query_count = query_count + 1, last_queried = ?
 WHERE chunk_id IN (SELECT value FROM json_each(?))
""", "postgresql": """
UPDATE embeddings_metadata SET query_count = query_count + 1, last_queried = ?
 WHERE chunk_id = ANY(?)
"""}


_LOCK_NOT_AVAILABLE = "55P03"


def _id_list(dialect: str, ids: list[Any]) -> Any:
    return json.dumps(ids) if dialect == "sqlite" else ids


_GENERATION_SQL = """
SELECT (SELECT generation FROM rag_state WHERE singleton = 1),
       (SELECT revision FROM embedding_models WHERE model = ?)
"""


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _result(row: Any, score: float) -> SearchResult:
    return SearchResult(row["chunk_id"], row["document_id"], row["chunk_index"], row["content"],
                        row["title"], float(score))


class Retrieval:
    """The searches of ``RagIndex`` (which provides the attributes declared here)."""

    db: Backend
    embedding_model: str
    dimension: int
    track_queries: bool
    prune_common_terms_from: int | None
    _clock: Callable[[], datetime]
    _matrix: VectorMatrix | None
    _matrix_lock: threading.Lock
    cache: Any  # a query_cache.RagQueryCache, or None


    def keyword_search(self, query: str, k: int = 10) -> list[SearchResult]:
        """The ``k`` chunks best matching ``query`` by FTS5 BM25 (any text is accepted)."""
        positive_int("k", k)
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        return self._cached({"m": "keyword", "q": query, "k": k}, b"", lambda: [
            _result(row, row["score"]) for row in self._keyword_rows(query, k)])

    def vector_search(self, vector: Vector, k: int = 10) -> list[SearchResult]:
        """The ``k`` chunks whose vectors are most cosine-similar to ``vector``."""
        positive_int("k", k)
        query_vector = as_vector(vector, self.dimension)

        def search() -> list[SearchResult]:
            hits = self._vector_hits(query_vector, k)
            rows = self._rows_by_id([rowid for rowid, _ in hits])
            return [_result(rows[rowid], score) for rowid, score in hits if rowid in rows]

        return self._cached({"m": "vector", "k": k}, query_vector.tobytes(), search)

    def hybrid_search(self, query: str, vector: Vector, k: int = 10, *, rrf_k: float = 60,
                      candidates: int | None = None) -> list[SearchResult]:
        """Keyword and vector rankings fused by reciprocal rank fusion.

        Each method contributes its top ``candidates`` (default ``max(4 * k, 50)``); the
        score is ``sum(1 / (rrf_k + rank))`` over the methods that found the chunk.
        """
        positive_int("k", k)
        pool = positive_int("candidates", candidates) if candidates is not None else max(4 * k, 50)
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        query_vector = as_vector(vector, self.dimension)

        def search() -> list[SearchResult]:
            vector_ids = [rowid for rowid, _ in self._vector_hits(query_vector, pool)]
            keyword_ids = [row["id"] for row in self._keyword_rows(query, pool)]
            fused = reciprocal_rank_fusion([keyword_ids, vector_ids], k=rrf_k, limit=k)
            rows = self._rows_by_id([rowid for rowid, _ in fused])
            return [_result(rows[rowid], score) for rowid, score in fused if rowid in rows]

        return self._cached({"m": "hybrid", "q": query, "k": k, "rrf": rrf_k, "pool": pool},
                            query_vector.tobytes(), search)

    def _cached(self, parts: dict[str, Any], vector: bytes,
                search: Callable[[], list[SearchResult]]) -> list[SearchResult]:
        """``search()``, through the query cache when there is one (``query_cache``); every
        answer, cached or not, counts as a retrieval of its chunks."""
        if self.cache is None:
            results = search()
        else:
            state = self.db.query_one(_GENERATION_SQL, (self.embedding_model,))
            key = self.cache.key(state[0], state[1], {**parts, "model": self.embedding_model,
                                                      "dim": self.dimension,
                                                      "prune": self.prune_common_terms_from}, vector)
            results = self.cache.get(key)
            if results is None:
                results = search()
                self.cache.put(key, results)
        self._record_queries(results)
        return results

    # -- internals ------------------------------------------------------------------------

    def _keyword_rows(self, query: str, limit: int) -> list[Any]:
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        parsed = parse_query(query)
        if parsed is None:
            return []
        dialect = self.db.dialect.name
        if dialect != "sqlite":
            phrase = None if parsed.phrase is None else parsed.phrase[1:-1].replace('""', '"')
            return self.db.query(_KEYWORD_SQL[dialect], (phrase, parsed.expression(), limit))
        return self.db.query(_KEYWORD_SQL[dialect], (self._prune_common_terms(parsed), limit))

    def _prune_common_terms(self, parsed: KeywordQuery) -> str:
        """The MATCH expression without the parts BM25 would weigh ~0 (see ``__init__``).
        SQLite's only: ``ts_rank_cd`` has no IDF, so there no term weighs ~0 for being common."""
        threshold = self.prune_common_terms_from
        if threshold is None or len(parsed.parts) < 2 or self.db.dialect.name != "sqlite":
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
        dialect = self.db.dialect.name
        return {row["id"]: row for row in self.db.query(_ROWS_BY_ID_SQL[dialect],
                                                         (_id_list(dialect, rowids),))}

    def _record_queries(self, results: list[SearchResult]) -> None:
        """Count one retrieval for each returned chunk, best-effort and without waiting.

        A search must not stall behind a long write (a bulk ingest holds the write lock for
        its whole transaction), so the update does not wait for the lock: when the
        database is busy these retrievals simply go uncounted.
        """
        if not self.track_queries or not results:
            return
        dialect = self.db.dialect.name
        sql = _COUNT_QUERIES_SQL[dialect]
        params = (to_db(self._clock()), _id_list(dialect, [r.chunk_id for r in results]))
        conn = self.db.connection()
        if conn.in_transaction:   # the caller's transaction: count inside it
            conn.execute(sql, params)
            return
        if dialect != "sqlite":
            self._record_queries_without_waiting(sql, params, len(results))
            return
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute(sql, params)
        except OperationalError as exc:
            if not is_busy_error(exc):
                raise
            log.debug("%s: database busy, %d retrievals not counted", self.db.name, len(results))
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.db.settings.busy_timeout_ms)}")

    def _record_queries_without_waiting(self, sql: str, params: tuple[Any, ...], count: int) -> None:
        """PostgreSQL: the update gives up at once on a row another transaction holds
        (lock_timeout) or on a conflict, and those retrievals go uncounted."""
        try:
            with self.db.transaction() as conn:
                conn.execute("SET LOCAL lock_timeout = '1ms'")
                conn.execute(sql, params)
        except StatementError as exc:
            if not isinstance(exc, TransactionConflict) and exc.sqlstate != _LOCK_NOT_AVAILABLE:
                raise
            log.debug("%s: %d retrievals not counted (%s)", self.db.name, count, exc)
