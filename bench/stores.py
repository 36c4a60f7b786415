"""Storage-core component benchmarks on SQLCipher and on PostgreSQL, each next to plain SQLite
measured in the same run (the baseline every ratio is against).

- evolution metrics: batched fitness inserts, rows/s (target >= 100k rows/s);
- ledger: single appends/s (8 threads too) and batched appends/s;
- RAG index: hybrid (FTS5 + cosine, RRF) query latency over 10k chunks of dimension 384
  (target p50 < 50 ms), plus keyword-only and vector-only;
- RAG query cache: a hybrid query answered from Redis (a hit) against the same query uncached
  (``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/14``, flushed; skipped without Redis).

    .venv/bin/python bench/stores.py [--chunks 10000] [--quick] [--no-postgresql]

PostgreSQL: a database created for the run on ``BENCH_POSTGRESQL_URL`` (an account allowed to
create databases, default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped after;
the column reads "-" when the server is not reachable.
``--quick``: small sizes, a smoke run (the figures mean nothing on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from twin.evolution.schema import MIGRATIONS as EVOLUTION  # noqa: E402
from twin.evolution.store import EvolutionStore  # noqa: E402
from twin.ledger.ledger import DatabaseLedger  # noqa: E402
from twin.ledger.schema import MIGRATIONS as LEDGER  # noqa: E402
from twin.rag.index import RagIndex  # noqa: E402
from twin.rag.schema import MIGRATIONS as RAG  # noqa: E402
from twin.storage import Backend, Database, Migrator  # noqa: E402

KEY = os.urandom(32)
ADMIN_URL = os.environ.get("BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ("sqlcipher", "postgresql", "plain")   # plain SQLite: the baseline
_created: list[str] = []


def fresh(migrations, kind: str) -> Backend:
    """A new, migrated database: an SQLCipher file, a plain SQLite file, or a PostgreSQL
    database of its own (dropped by ``drop_created``)."""
    if kind == "postgresql":
        import secrets

        import psycopg

        from twin.storage import PostgresSettings, open_postgresql

        name = f"twin_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        _created.append(name)
        db: Backend = open_postgresql(PostgresSettings(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
                                                       pool_size=2, pool_max_size=10), name="bench")
    else:
        db = Database(Path(tempfile.mkdtemp(prefix="twin-bench-")) / "bench.db",
                      KEY if kind == "sqlcipher" else None)
    Migrator(db, migrations).migrate()
    return db


def postgresql_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # any failure: no server to measure
        return False


def drop_created() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        for name in _created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created.clear()


SIZES = {"rounds": 10, "per_round": 20_000, "ledger": 2_000, "queries": 200}
QUICK = {"rounds": 2, "per_round": 2_000, "ledger": 200, "queries": 20}


def evolution(kind: str, with_metrics: bool, rounds: int = 10, per_round: int = 20_000) -> float:
    store = EvolutionStore(fresh(EVOLUTION, kind))
    batches = []
    for r in range(rounds):
        round_id = store.start_round(r, 0, population_size=per_round).id
        rows = [(f"agent-{i:06d}", random.random()) + (({"acc": 0.9},) if with_metrics else ())
                for i in range(per_round)]
        batches.append((round_id, rows))
    start = time.perf_counter()
    for round_id, rows in batches:
        store.record_fitness(round_id, rows)
    rate = rounds * per_round / (time.perf_counter() - start)
    store.db.close_all()
    return rate


def _entry(i: int, node: str) -> dict:
    return {"timestamp": 1.7e9 + i / 1000, "node_id": node, "confidence": 0.8,
            "features": [{"packet_size": 500 + i % 100, "port": 443}]}


def ledger(kind: str, n: int = 2_000) -> dict[str, float]:
    led = DatabaseLedger(fresh(LEDGER, kind), owns_db=True)
    counted = led.db.counter.snapshot()  # PostgreSQL counts round trips always
    start = time.perf_counter()
    for i in range(n):
        led.append_entry(_entry(i, "node-a"))
    single = n / (time.perf_counter() - start)
    single_trips = (led.db.counter.snapshot() - counted).round_trips / n

    def worker(t: int) -> None:
        for i in range(n // 8):
            led.append_entry(_entry(i, f"node-t{t}"))
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threaded = (n // 8 * 8) / (time.perf_counter() - start)
    counted = led.db.counter.snapshot()
    start = time.perf_counter()
    for b in range(20):
        led.append_entries([_entry(i, f"node-b{b}") for i in range(500)])
    batched = 20 * 500 / (time.perf_counter() - start)
    batch_trips = (led.db.counter.snapshot() - counted).round_trips / 20
    assert led.verify_chain().ok
    led.close()
    return {"single": single, "threads8": threaded, "batched": batched,
            "single_trips": single_trips, "batch_trips": batch_trips}


WORDS = [f"w{i}" for i in range(5000)]


def rag(kind: str, chunks: int, queries: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(7)
    index = RagIndex(fresh(RAG, kind), dimension=384)
    zipf = np.minimum(rng.zipf(1.3, size=(chunks, 80)), len(WORDS)) - 1
    vectors = rng.standard_normal((chunks, 384)).astype(np.float32)
    db = index.db
    for start in range(0, chunks, 1000):
        with db.transaction():
            for i in range(start, min(chunks, start + 1000)):
                text = " ".join(WORDS[w] for w in zipf[i]) + f" doc{i}"
                index.add_document(text, title=f"doc {i}", embeddings=[vectors[i]])
    qvecs = rng.standard_normal((queries, 384)).astype(np.float32)
    qtexts = [" ".join(WORDS[w] for w in rng.integers(0, 300, size=3)) for _ in range(queries)]
    index.hybrid_search(qtexts[0], qvecs[0], k=10)  # load the vector matrix once
    out = {}
    for name, call in (("hybrid", lambda i: index.hybrid_search(qtexts[i], qvecs[i], k=10)),
                       ("keyword", lambda i: index.keyword_search(qtexts[i], k=10)),
                       ("vector", lambda i: index.vector_search(qvecs[i], k=10))):
        times = []
        for i in range(queries):
            t = time.perf_counter()
            call(i)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[f"{name}_p50"] = statistics.median(times)
        out[f"{name}_p95"] = times[int(len(times) * 0.95) - 1]
    db.close_all()
    return out


def _percentiles(times: list[float], name: str) -> dict[str, float]:
    times = sorted(times)
    return {f"{name}_p50": statistics.median(times), f"{name}_p95": times[max(0, int(len(times) * 0.95) - 1)]}


def rag_cache(chunks: int, queries: int) -> dict[str, float] | None:
    import redis

    from twin.cache import ResilientRedis
    from twin.rag.query_cache import RagQueryCache

    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError:
        return None
    rng = np.random.default_rng(11)
    db = fresh(RAG, "sqlcipher")
    plain_index = RagIndex(db, dimension=384, track_queries=False)
    cache = RagQueryCache(ResilientRedis(url, name="bench RAG"))
    cached_index = RagIndex(db, dimension=384, track_queries=False, cache=cache)
    vectors = rng.standard_normal((chunks, 384)).astype(np.float32)
    with db.transaction():
        for i in range(chunks):
            plain_index.add_document(" ".join(WORDS[w] for w in rng.integers(0, 300, size=60)) + f" doc{i}",
                                     embeddings=[vectors[i]])
    qvecs = rng.standard_normal((queries, 384)).astype(np.float32)
    qtexts = [" ".join(WORDS[w] for w in rng.integers(0, 300, size=3)) for _ in range(queries)]
    for i in range(queries):  # fill the cache (and load the vector matrix)
        cached_index.hybrid_search(qtexts[i], qvecs[i], k=10)
    out: dict[str, float] = {}
    for name, index in (("uncached", plain_index), ("hit", cached_index)):
        times = []
        for i in range(queries):
            t = time.perf_counter()
            index.hybrid_search(qtexts[i], qvecs[i], k=10)
            times.append((time.perf_counter() - t) * 1000)
        out.update(_percentiles(times, name))
    client.flushdb()
    cache.close()
    return out


def _columns(values: dict[str, float | None], fmt: str, unit: str) -> str:
    """One figure per backend, and each one's ratio against the plain SQLite baseline."""
    base = values["plain"]
    cells = []
    for kind in KINDS:
        value = values.get(kind)
        shown = "-" if value is None else format(value, fmt)
        ratio = "" if value is None or kind == "plain" else f" ({value / base:.2f}x)"
        cells.append(f"{kind} {shown}{unit}{ratio}")
    return "   ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description="storage-core component benchmarks")
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-postgresql", action="store_true", help="SQLCipher and plain SQLite only")
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    chunks = args.chunks or (500 if args.quick else 10_000)
    rounds, per_round = sizes["rounds"], sizes["per_round"]
    kinds = [k for k in KINDS if k != "postgresql" or (not args.no_postgresql and postgresql_reachable())]
    try:
        _report(kinds, chunks, sizes, rounds, per_round)
    finally:
        if _created:
            drop_created()


def _report(kinds: list[str], chunks: int, sizes: dict[str, int], rounds: int, per_round: int) -> None:
    print("ratios: against plain SQLite measured in this run; PostgreSQL on "
          + (ADMIN_URL.rsplit("@", 1)[-1].rsplit("/", 1)[0] if "postgresql" in kinds else "- (not reachable)"))
    print(f"evolution: batched fitness inserts ({rounds} rounds x {per_round:,} rows, one transaction per round)")
    for label, with_metrics in (("(agent, score)", False), ("(agent, score, metrics JSON)", True)):
        rates = {kind: evolution(kind, with_metrics, rounds, per_round) for kind in kinds}
        print(f"  {label:<30} {_columns(rates, ',.0f', ' rows/s')}   target >= 100,000 rows/s on SQLCipher")
    print("ledger: hash-chained appends")
    measured = {kind: ledger(kind, sizes["ledger"]) for kind in kinds}
    for key, label in (("single", "one thread, one entry per transaction"), ("threads8", "8 threads"),
                       ("batched", "batches of 500")):
        print(f"  {label:<40} {_columns({k: m[key] for k, m in measured.items()}, ',.0f', '/s')}")
    if "postgresql" in measured:
        trips = measured["postgresql"]
        print(f"  round trips on PostgreSQL (at the driver): {trips['single_trips']:.1f} per single append, "
              f"{trips['batch_trips']:.1f} per batch of 500")
    print(f"RAG: query latency over {chunks:,} chunks, dimension 384, k=10 (ms; ratio > 1 is slower)")
    latencies = {kind: rag(kind, chunks, sizes["queries"]) for kind in kinds}
    for name in ("hybrid", "keyword", "vector"):
        for stat in ("p50", "p95"):
            print(f"  {name:<8} {stat} {_columns({k: l[f'{name}_{stat}'] for k, l in latencies.items()}, '.1f', '')}"
                  + ("   target p50 < 50 ms on both" if (name, stat) == ("hybrid", "p50") else ""))
    print("RAG query cache (SQLCipher): the same hybrid query from Redis (hit) and uncached (ms)")
    cached = rag_cache(chunks, sizes["queries"])
    if cached is None:
        print("  skipped: Redis not reachable at BENCH_REDIS_URL")
    else:
        print(f"  hit p50 {cached['hit_p50']:6.2f}  p95 {cached['hit_p95']:6.2f}   uncached p50 "
              f"{cached['uncached_p50']:6.2f}  p95 {cached['uncached_p95']:6.2f}   ratio "
              f"{cached['uncached_p50'] / cached['hit_p50']:.1f}x faster")


if __name__ == "__main__":
    main()
