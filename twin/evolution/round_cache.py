"""The optional Redis cache of the active (running) evolution rounds (seed 004's database 0,
beside the leaderboards of ``leaderboard_cache``).

Enabled by ``AIVILLAGE_REDIS_URL``. The running rounds are one JSON document under
``evo:active`` tagged with the database's ``rounds_version`` (evolution migration 3), which
every start, finish and delete of a round moves in its own transaction. Each such write
stores the running rounds it committed (read in that transaction) through to Redis, by a Lua
script that never replaces a newer version with an older one. A read compares the tag with
the database's version (one primary-key lookup) and serves from Redis only when they agree;
otherwise it reads the database and stores what it read. So rounds changed by any process, or
while Redis was unreachable, are never missing or stale. Rounds describe software agents'
evolution runs: nothing personal goes in. When Redis is down every call answers from the
database (``twin.cache.ResilientRedis``: one warning per outage, reconnection with backoff).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Mapping, Sequence

from twin.cache import ResilientRedis

from .records import Round

KEY = "evo:active"
TTL_SECONDS = 24 * 3600

# KEYS: the document. ARGV: version, document, ttl. Keeps the newer of what is there and this.
_STORE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'rounds', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class ActiveRoundCache:
    """The running rounds in Redis, checked against the database's rounds version."""

    def __init__(self, redis: ResilientRedis) -> None:
        self.redis = redis
        self.hits = 0
        self.misses = 0
        self._script = redis.client.register_script(_STORE_IF_NEWER)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> "ActiveRoundCache | None":
        redis = ResilientRedis.from_env("AIVILLAGE_REDIS_URL", environ, name="evolution active rounds", **options)
        return cls(redis) if redis else None

    def store(self, version: int, rounds: Sequence[Round]) -> None:
        document = json.dumps([asdict(r) for r in rounds], sort_keys=True)
        self.redis.call(lambda client: self._script(keys=[KEY], args=[str(version), document,
                                                                      str(TTL_SECONDS)]), None)

    def get(self, version: int) -> list[Round] | None:
        """The running rounds if the cached document is at ``version``, else None."""
        answer = self.redis.call(lambda client: client.hmget(KEY, "version", "rounds"), None)
        if answer is None or answer[0] is None or int(answer[0]) != version:
            self.misses += 1
            return None
        self.hits += 1
        return [Round(**fields) for fields in json.loads(answer[1])]

    def close(self) -> None:
        self.redis.close()
