"""The optional Redis cache of evolution leaderboards (seed 004's Redis database 0).

Enabled by ``AIVILLAGE_REDIS_URL`` (e.g. ``redis://localhost:6379/0``). Each round's fitness
scores are a sorted set ``evo:lb:<round id>`` (member: agent id, score: the negated fitness,
so ascending order is best first with ties by agent id, as the database orders them) with a
hash ``evo:lb:<round id>:meta`` holding ``writes``: how many fitness rows the set reflects.

Every ``record_fitness`` writes through after its commit, atomically (a Lua script) and only
onto a set that reflected exactly the rows before that batch; otherwise the set is dropped.
A read compares ``writes`` with the round's ``fitness_writes`` in the database (one primary-key
lookup) and serves from Redis only when they agree, else rebuilds the set from one database
snapshot. So rows written by any process, including while Redis was unreachable, are never
missing from a served leaderboard. Agent ids are software agents, not people; nothing personal
goes in. When Redis is down every call answers from the database (``twin.cache.ResilientRedis``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from twin.cache import ResilientRedis

TTL_SECONDS = 24 * 3600

# KEYS: set, meta. ARGV: expected writes ('' = any), new writes, ttl, member/score pairs...
_WRITE_THROUGH = """
local current = redis.call('HGET', KEYS[2], 'writes')
if ARGV[1] ~= '' and current ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 0
end
if ARGV[1] == '' then redis.call('DEL', KEYS[1]) end
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
end
redis.call('HSET', KEYS[2], 'writes', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


class LeaderboardCache:
    """Round leaderboards in Redis, checked against the database's write count (module doc)."""

    def __init__(self, redis: ResilientRedis) -> None:
        self.redis = redis
        self.hits = 0
        self.misses = 0
        self._script = redis.client.register_script(_WRITE_THROUGH)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> "LeaderboardCache | None":
        redis = ResilientRedis.from_env("AIVILLAGE_REDIS_URL", environ, name="evolution leaderboard", **options)
        return cls(redis) if redis else None

    @staticmethod
    def _keys(round_id: int) -> list[str]:
        return [f"evo:lb:{round_id}", f"evo:lb:{round_id}:meta"]

    def store(self, round_id: int, scores: Sequence[tuple[str, float]], before: int | None, after: int) -> None:
        """Write ``scores`` through: onto a set at ``before`` writes, or (``before`` None) as the
        whole set at ``after`` writes."""
        args: list[Any] = ["" if before is None else str(before), str(after), str(TTL_SECONDS)]
        for agent_id, score in scores:
            args += [agent_id, repr(-float(score))]
        self.redis.call(lambda client: self._script(keys=self._keys(round_id), args=args), None)

    def top(self, round_id: int, n: int, writes: int) -> list[tuple[str, float]] | None:
        """The ``n`` best ``(agent_id, score)`` if the cached set reflects ``writes`` rows, else None."""
        set_key, meta_key = self._keys(round_id)

        def read(client: Any) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.hget(meta_key, "writes")
            pipe.zrange(set_key, 0, n - 1, withscores=True)
            return pipe.execute()

        answer = self.redis.call(read, None)
        if answer is None or answer[0] is None or int(answer[0]) != writes:
            self.misses += 1
            return None
        self.hits += 1
        return [(member.decode(), -score + 0.0) for member, score in answer[1]]

    def close(self) -> None:
        self.redis.close()
