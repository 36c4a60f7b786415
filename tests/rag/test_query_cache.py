"""The optional Redis query cache (seed 004, db 1): identical answers with a real Redis, with an
unreachable one (a closed port) and with one stopped and restarted around writes (a server of
the test's own), no stale answer after an outage, one warning per outage. Real SQLCipher, real
Redis servers on real sockets."""

from __future__ import annotations

import contextlib
import functools
import logging

import pytest
from storage_backends import same_database
from redis_servers import FakeClock, OwnRedis, cache_warnings, flushed_redis, free_port, restarted_around
from twin.cache import ResilientRedis
from twin.rag import Chunker, RagIndex, RagQueryCache

DIM = 8
REAL_REDIS_DB = 13  # this test's own database on the shared server, flushed by it
DOCUMENTS = [
    ("Mitochondria make ATP, the energy currency of the cell.", "Biology", 0),
    ("Photosynthesis turns light energy into sugar in the chloroplast.", "Botany", 1),
    ("The cell membrane controls what enters and leaves the cell.", "Cells", 2),
]
LATER = ("Ribosomes build proteins from amino acids inside the cell.", "Proteins", 3)


def axis(i: int) -> list[float]:
    vector = [0.01] * DIM
    vector[i] = 1.0
    return vector



def ingest(index: RagIndex, text: str, title: str, i: int) -> str:
    return index.add_document(text, title=title, embeddings=lambda chunks: [axis(i) for _ in chunks]).document_id


def answers(index: RagIndex) -> list:
    """What a user sees from each kind of query (ids are random per run, so not compared)."""
    shown = []
    for results in (index.keyword_search("cell energy", k=5), index.vector_search(axis(1), k=3),
                    index.hybrid_search("cell", axis(2), k=4)):
        shown.append([(r.content, r.title, r.chunk_index, round(r.score, 12)) for r in results])
    return shown


def scenario(index: RagIndex, outage=contextlib.nullcontext) -> list:
    """Ingest, query twice, then delete and ingest while Redis may be away, query during and after."""
    ids = [ingest(index, *doc) for doc in DOCUMENTS]
    seen = [answers(index), answers(index)]
    with outage():
        index.delete_document(ids[0])
        ingest(index, *LATER)
        seen.append(answers(index))
    seen += [answers(index), answers(index)]
    return seen


def make_index(rag_db, cache=None) -> RagIndex:
    return RagIndex(rag_db, embedding_model="test-model", dimension=DIM, chunker=Chunker(size=64, overlap=0),
                    cache=cache)


@pytest.fixture
def baseline(databases):
    """The scenario's answers without any cache, on the test's backend (scores are each
    backend's own: BM25 on SQLCipher, ts_rank_cd on PostgreSQL)."""
    from twin.rag.schema import MIGRATIONS
    from twin.storage import Migrator

    db = databases.new("rag_index")
    Migrator(db, MIGRATIONS).migrate()
    return scenario(make_index(db))


@pytest.fixture
def real_redis():
    yield from flushed_redis(REAL_REDIS_DB)


def cache_of(url: str, clock=None) -> RagQueryCache:
    return RagQueryCache(ResilientRedis(url, name="RAG query", backoff_base=1.0,
                                        **({"clock": clock} if clock else {})), ttl_seconds=300)


def test_with_redis_the_answers_are_those_of_the_database_and_repeats_are_hits(rag_db, baseline, real_redis):
    url, client = real_redis
    cache = cache_of(url)

    seen = scenario(make_index(rag_db, cache))

    assert seen == baseline
    assert cache.hits >= 3 * 3  # every repeated query of a generation
    keys = [key.decode() for key in client.keys("*")]
    assert keys and all(key.startswith("rag:q:") for key in keys)
    assert all(0 < client.ttl(key) <= 300 for key in keys)
    assert not any("cell" in key or "energy" in key for key in keys)  # the query is only hashed
    cache.close()


def test_an_ingest_or_delete_in_another_process_invalidates_every_cached_answer(rag_db, real_redis, db_key):
    url, _ = real_redis
    cached = make_index(rag_db, cache_of(url))
    other_writer = make_index(same_database(rag_db, db_key))  # another connection, no cache
    first = ingest(cached, *DOCUMENTS[0])
    assert [r.title for r in cached.keyword_search("cell")] == ["Biology"]

    other_writer.delete_document(first)
    ingest(other_writer, *DOCUMENTS[2])

    assert [r.title for r in cached.keyword_search("cell")] == ["Cells"]
    other_writer.db.close_all()


def test_with_redis_unreachable_every_answer_comes_from_the_database_with_one_warning(
        rag_db, baseline, caplog):
    cache = cache_of(f"redis://127.0.0.1:{free_port()}/1", clock=FakeClock())

    with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
        seen = scenario(make_index(rag_db, cache))

    assert seen == baseline
    assert cache.hits == 0 and cache.redis.outages == 1
    [warning] = cache_warnings(caplog)
    assert "unavailable" in warning and "answering from the database" in warning


def test_redis_stopped_and_restarted_around_writes_gives_the_same_answers_and_no_stale_one(
        rag_db, baseline, tmp_path, caplog):
    server = OwnRedis(tmp_path)
    server.start()
    clock = FakeClock()
    cache = cache_of(server.url, clock)

    outage = functools.partial(restarted_around, server, clock)

    try:
        with caplog.at_level(logging.INFO, logger="twin.cache.redis_client"):
            seen = scenario(make_index(rag_db, cache), outage)
    finally:
        server.stop()

    assert seen == baseline
    assert cache.redis.outages == 1 and len(cache_warnings(caplog)) == 1
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert cache.hits >= 3  # the repeat after the restart was served by Redis


def test_a_wrong_dimension_is_refused_before_the_cache_is_asked(rag_db, real_redis):
    from twin.rag import DimensionMismatchError

    url, client = real_redis
    index = make_index(rag_db, cache_of(url))
    with pytest.raises(DimensionMismatchError):
        index.vector_search([1.0, 0.0])
    assert client.keys("*") == []


def test_the_environment_turns_the_cache_on_and_points_it_at_its_url(monkeypatch):
    assert RagQueryCache.from_env({}) is None
    assert RagQueryCache.from_env({"RAG_CACHE_ENABLED": "false"}) is None
    cache = RagQueryCache.from_env({"RAG_CACHE_ENABLED": "true",
                                    "RAG_REDIS_URL": "redis://:s3cret@127.0.0.1:6390/1",
                                    "RAG_CACHE_TTL_SECONDS": "60"})
    assert cache.ttl_seconds == 60
    assert cache.redis.display_url == "redis://127.0.0.1:6390/1"  # never the password
    assert "s3cret" not in repr(cache.redis)
    with pytest.raises(ValueError, match="RAG_CACHE_TTL_SECONDS"):
        RagQueryCache.from_env({"RAG_CACHE_ENABLED": "1", "RAG_CACHE_TTL_SECONDS": "0"})
