"""The optional Redis cache of RAG query results (seed 004's Redis database 1).

Enabled by ``RAG_CACHE_ENABLED=true``; ``RAG_REDIS_URL`` (default ``redis://localhost:6379/1``)
and ``RAG_CACHE_TTL_SECONDS`` (default 300). A result is cached under

    rag:q:<generation>:<vector revision>:<SHA-256 of the query, vector, k and options>

where the generation moves on with every document ingested or deleted and the revision with
every vector written (both read from the database on each query, one primary-key lookup), so an
ingest or delete invalidates every cached answer at once, in every process, including writes
made while Redis was away: no stale answer survives an outage. Entries also expire after the
TTL. Only chunk ids, texts, titles and scores of reference documents go in (the RAG index holds
no personal data); query text and vectors appear only as part of a hash. When Redis is
unreachable every query is answered from the database (``twin.cache.ResilientRedis``).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from twin.cache import ResilientRedis
from twin.cache.redis_client import flag

from .records import SearchResult

DEFAULT_URL = "redis://localhost:6379/1"
DEFAULT_TTL_SECONDS = 300
PREFIX = "rag:q:"


class RagQueryCache:
    """Query results in Redis, keyed by the index's generation (module docstring)."""

    def __init__(self, redis: ResilientRedis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise ValueError("ttl_seconds must be a positive integer")
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> "RagQueryCache | None":
        """The cache the environment asks for, or None (``RAG_CACHE_ENABLED`` unset or false)."""
        environ = os.environ if environ is None else environ
        if not flag(environ.get("RAG_CACHE_ENABLED", "")):
            return None
        raw_ttl = environ.get("RAG_CACHE_TTL_SECONDS", str(DEFAULT_TTL_SECONDS)).strip()
        if not raw_ttl.isdigit() or int(raw_ttl) < 1:
            raise ValueError("RAG_CACHE_TTL_SECONDS must be a positive integer")
        url = environ.get("RAG_REDIS_URL", "").strip() or DEFAULT_URL
        return cls(ResilientRedis(url, name="RAG query", **options), ttl_seconds=int(raw_ttl))

    @staticmethod
    def key(generation: int, revision: str, parts: Mapping[str, Any], vector: bytes = b"") -> str:
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
                                + b"\x00" + vector).hexdigest()
        return f"{PREFIX}{generation}:{revision or '-'}:{digest}"

    def get(self, key: str) -> list[SearchResult] | None:
        raw = self.redis.call(lambda client: client.get(key), None)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return [SearchResult(*item) for item in json.loads(raw)]

    def put(self, key: str, results: list[SearchResult]) -> None:
        payload = json.dumps([[r.chunk_id, r.document_id, r.chunk_index, r.content, r.title, r.score]
                              for r in results], separators=(",", ":"))
        self.redis.call(lambda client: client.set(key, payload, ex=self.ttl_seconds), None)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "outages": self.redis.outages}

    def close(self) -> None:
        self.redis.close()
