"""The optional Redis cache of active rounds (seed 004, db 0): the running rounds are the same
with a real Redis, an unreachable one (a closed port) and one stopped and restarted around
writes (a server of the test's own); rounds started, finished or deleted by another process or
while Redis was away are never missing or stale. On each backend, real Redis servers."""

from __future__ import annotations

import contextlib
import functools
import logging

import pytest
from storage_backends import same_database
from redis_servers import FakeClock, OwnRedis, cache_warnings, flushed_redis, free_port, restarted_around
from twin.cache import ResilientRedis
from twin.evolution import EvolutionStore
from twin.evolution.round_cache import KEY, ActiveRoundCache

REAL_REDIS_DB = 11  # this test's own database on the shared server, flushed by it


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("evolution_metrics")


def running(store: EvolutionStore) -> list[tuple[int, int, str]]:
    return [(r.round_number, r.generation, r.status) for r in store.active_rounds()]


def scenario(store: EvolutionStore, outage=contextlib.nullcontext) -> list:
    seen = [running(store)]
    first = store.start_round(1, 0, population_size=10, metadata={"strategy": "tournament"})
    second = store.start_round(2, 0)
    seen += [running(store), running(store)]
    store.finish_round(first.id)
    seen.append(running(store))
    with outage():
        store.start_round(3, 0)
        store.delete_round(second.id)
        seen.append(running(store))
    seen += [running(store), running(store)]
    store.start_round(4, 1)
    seen.append(running(store))
    assert store.active_rounds()[0].metadata is None and store.active_rounds()[-1].round_number == 3
    return seen


BASELINE = [[], [(2, 0, "running"), (1, 0, "running")], [(2, 0, "running"), (1, 0, "running")],
            [(2, 0, "running")], [(3, 0, "running")], [(3, 0, "running")], [(3, 0, "running")],
            [(4, 1, "running"), (3, 0, "running")]]


def cache_of(url: str, clock=None) -> ActiveRoundCache:
    return ActiveRoundCache(ResilientRedis(url, name="evolution active rounds", backoff_base=1.0,
                                           **({"clock": clock} if clock else {})))


@pytest.fixture
def real_redis():
    yield from flushed_redis(REAL_REDIS_DB)


def test_without_a_cache_the_running_rounds_come_from_the_database(db):
    assert scenario(EvolutionStore(db)) == BASELINE


def test_with_redis_the_running_rounds_are_the_databases_and_written_through(db, real_redis):
    url, client = real_redis
    cache = cache_of(url)
    store = EvolutionStore(db, rounds_cache=cache)

    assert scenario(store) == BASELINE
    assert cache.hits >= 6 and cache.misses <= 1   # every write stored what it left running
    version = db.query_one("SELECT rounds_version FROM evolution_state")[0]
    assert int(client.hget(KEY, "version")) == version == 6
    assert sorted(k.decode() for k in client.keys("*")) == [KEY]


def test_rounds_changed_by_another_process_are_never_missing_or_stale(db, real_redis, db_key):
    url, _ = real_redis
    cached = EvolutionStore(db, rounds_cache=cache_of(url))
    started = cached.start_round(1, 0)
    assert running(cached) == [(1, 0, "running")]

    other = same_database(db, db_key)  # another process's handle, without the cache
    try:
        EvolutionStore(other).finish_round(started.id, "failed")
        EvolutionStore(other).start_round(5, 0)
    finally:
        other.close_all()

    assert running(cached) == [(5, 0, "running")]


def test_with_redis_unreachable_the_running_rounds_come_from_the_database_with_one_warning(db, caplog):
    cache = cache_of(f"redis://127.0.0.1:{free_port()}/0", clock=FakeClock())

    with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
        seen = scenario(EvolutionStore(db, rounds_cache=cache))

    assert seen == BASELINE
    assert cache.hits == 0 and cache.redis.outages == 1 and len(cache_warnings(caplog)) == 1


def test_redis_stopped_and_restarted_around_writes_gives_the_same_rounds(db, tmp_path, caplog):
    server = OwnRedis(tmp_path)
    server.start()
    clock = FakeClock()
    cache = cache_of(server.url, clock)

    outage = functools.partial(restarted_around, server, clock)

    try:
        with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
            seen = scenario(EvolutionStore(db, rounds_cache=cache), outage)
    finally:
        server.stop()

    assert seen == BASELINE
    assert cache.redis.outages == 1 and len(cache_warnings(caplog)) == 1
    assert cache.hits >= 3  # served from Redis again after the restart


def test_the_environment_turns_the_cache_on():
    assert ActiveRoundCache.from_env({}) is None
    cache = ActiveRoundCache.from_env({"AIVILLAGE_REDIS_URL": "redis://:pw@127.0.0.1:6391/0"})
    assert cache.redis.display_url == "redis://127.0.0.1:6391/0"
