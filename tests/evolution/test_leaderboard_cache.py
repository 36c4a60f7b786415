"""The optional Redis leaderboard cache (seed 004, db 0): identical leaderboards with a real
Redis, an unreachable one (a closed port) and one stopped and restarted around writes (a server
of the test's own); rows written while Redis was away, or by another process, are never missing;
one warning per outage. Real SQLCipher and PostgreSQL, real Redis servers on real sockets."""

from __future__ import annotations

import contextlib
import functools
import logging

import pytest
from storage_backends import same_database
from redis_servers import FakeClock, OwnRedis, cache_warnings, flushed_redis, free_port, restarted_around
from twin.cache import ResilientRedis
from twin.evolution import EvolutionStore
from twin.evolution.leaderboard_cache import LeaderboardCache

REAL_REDIS_DB = 12  # this test's own database on the shared server, flushed by it



def boards(store: EvolutionStore, round_id: int) -> list:
    return [[(e.rank, e.agent_id, e.fitness_score) for e in store.leaderboard(round_id, n)] for n in (1, 3, 50)]


def scenario(store: EvolutionStore, outage=contextlib.nullcontext) -> list:
    round_id = store.start_round(1, 0).id
    store.record_fitness(round_id, [("agent-b", 0.5), ("agent-a", 0.5), ("agent-c", 0.9), ("agent-d", -0.0)])
    seen = [boards(store, round_id), boards(store, round_id)]
    store.record_fitness(round_id, [("agent-e", 0.7)])
    seen.append(boards(store, round_id))
    with outage():
        store.record_fitness(round_id, [("agent-f", 0.95), ("agent-g", 0.1)])
        seen.append(boards(store, round_id))
    seen += [boards(store, round_id), boards(store, round_id)]
    store.record_fitness(round_id, [("agent-h", 0.6)])
    seen.append(boards(store, round_id))
    return seen


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("evolution_metrics")


@pytest.fixture
def baseline(tmp_path, keyring):
    from twin.evolution.schema import MIGRATIONS
    from twin.storage import Database, Migrator

    other = Database(tmp_path / "baseline.db", keyring.database_key, name="evolution_metrics")
    Migrator(other, MIGRATIONS).migrate()
    yield scenario(EvolutionStore(other))
    other.close_all()


@pytest.fixture
def real_redis():
    yield from flushed_redis(REAL_REDIS_DB)


def cache_of(url: str, clock=None) -> LeaderboardCache:
    return LeaderboardCache(ResilientRedis(url, name="evolution leaderboard", backoff_base=1.0,
                                           **({"clock": clock} if clock else {})))


def test_with_redis_leaderboards_are_the_databases_and_written_through(db, baseline, real_redis):
    url, client = real_redis
    cache = cache_of(url)

    seen = scenario(EvolutionStore(db, cache=cache))

    assert seen == baseline
    assert seen[0][2][0] == (1, "agent-c", 0.9) and seen[0][2][1:3] == [(2, "agent-a", 0.5), (3, "agent-b", 0.5)]
    assert cache.hits >= 3 * 4
    assert sorted(k.decode() for k in client.keys("*")) == ["evo:lb:1", "evo:lb:1:meta"]
    assert client.zcard("evo:lb:1") == 8 and client.hget("evo:lb:1:meta", "writes") == b"8"


def test_rows_written_by_another_process_are_never_missing(db, real_redis, db_key):
    url, _ = real_redis
    cached = EvolutionStore(db, cache=cache_of(url))
    round_id = cached.start_round(1, 0).id
    cached.record_fitness(round_id, [("agent-a", 0.5)])
    assert [e.agent_id for e in cached.leaderboard(round_id)] == ["agent-a"]

    other = same_database(db, db_key)  # another process's handle, without the cache
    try:
        EvolutionStore(other).record_fitness(round_id, [("agent-z", 0.99)])
    finally:
        other.close_all()

    assert [e.agent_id for e in cached.leaderboard(round_id)] == ["agent-z", "agent-a"]


def test_with_redis_unreachable_every_leaderboard_comes_from_the_database_with_one_warning(
        db, baseline, caplog):
    cache = cache_of(f"redis://127.0.0.1:{free_port()}/0", clock=FakeClock())

    with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
        seen = scenario(EvolutionStore(db, cache=cache))

    assert seen == baseline
    assert cache.hits == 0 and cache.redis.outages == 1 and len(cache_warnings(caplog)) == 1


def test_redis_stopped_and_restarted_around_writes_gives_the_same_leaderboards(db, baseline, tmp_path, caplog):
    server = OwnRedis(tmp_path)
    server.start()
    clock = FakeClock()
    cache = cache_of(server.url, clock)

    outage = functools.partial(restarted_around, server, clock)

    try:
        with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
            seen = scenario(EvolutionStore(db, cache=cache), outage)
    finally:
        server.stop()

    assert seen == baseline
    assert cache.redis.outages == 1 and len(cache_warnings(caplog)) == 1
    assert cache.hits >= 3  # served from Redis again after the restart


def test_the_environment_turns_the_cache_on():
    assert LeaderboardCache.from_env({}) is None
    cache = LeaderboardCache.from_env({"AIVILLAGE_REDIS_URL": "redis://:pw@127.0.0.1:6391/0"})
    assert cache.redis.display_url == "redis://127.0.0.1:6391/0"
