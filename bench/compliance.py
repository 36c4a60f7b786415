"""Compliance benchmarks.

1. Export and erase time for one subject with 10k sessions and 1k knowledge states
   (targets: export < 1 s, erase < 0.5 s), next to a plain SQLite run of the same work.
2. Retention purge throughput for 1M expired session rows (target >= 50k rows/s), with the
   API's p99 latency for profile reads measured while the purge runs (target < 50 ms), next
   to the same reads with no purge running.

    .venv/bin/python bench/compliance.py [--purge-rows 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from _server import running_server

from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime
from twin.storage.timestamps import to_db, utc_now

ADMIN = Actor("bench", "admin")


def fill_subject(rt: Runtime, user_id: str, sessions: int, knowledge: int) -> str:
    profile, _ = rt.profiles.create(ADMIN, None, {"user_id": user_id, "personal": {"name": "Bench Person"},
                                                  "learning_goals": ["g"]})
    pid = profile["profile_id"]
    subject = rt.hasher.hash(user_id)
    sealer = rt.keys.writer(subject)
    now = utc_now()
    def sealed(i: int, column: str, value: object) -> bytes:
        return sealer.seal("learning_sessions", column, f"ses_{user_id}_{i}", value)

    rows = [(f"ses_{user_id}_{i}", pid, sealed(i, "session_type", "lesson"), to_db(now - timedelta(minutes=i)),
             sealed(i, "topics_covered", ["a", "b"]), sealed(i, "performance_metrics", {"score": i % 100}),
             0.5, "completed") for i in range(sessions)]
    kstates = [(pid, f"domain{i % 10}", f"topic{i}", 0.5, 0.5, to_db(now),
                sealer.seal("knowledge_states", "learning_trajectory", f"{pid}/domain{i % 10}/topic{i}", {"s": i}), 1)
               for i in range(knowledge)]

    def insert(conn):
        conn.executemany("INSERT INTO learning_sessions (session_id, profile_id, session_type, start_time, "
                         "topics_covered, performance_metrics, engagement_score, completion_status) "
                         "VALUES (?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO knowledge_states (profile_id, knowledge_domain, topic, mastery_level, "
                         "confidence_score, last_accessed, learning_trajectory, prerequisites_met) "
                         "VALUES (?,?,?,?,?,?,?,?)", kstates)
    rt.twin_db.write(insert)
    return subject


def dsr_bench(plaintext: bool) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(prefix="twin-bench-dsr-"))
    rt = Runtime(Config(env="test", data_dir=d, keyring_path=d / "k.json", bench_plaintext=plaintext),
                 Keyring.generate())
    for n in range(20):  # other subjects, so the subject's rows are not the whole file
        fill_subject(rt, f"other-{n}", 500, 50)
    fill_subject(rt, "subject-under-test", 10_000, 1_000)
    start = time.perf_counter()
    size = sum(len(chunk) for chunk in rt.subject_requests.export(ADMIN, None, "subject-under-test"))
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    receipt = rt.subject_requests.erase(ADMIN, None, user_id="subject-under-test")
    erase_s = time.perf_counter() - start
    assert receipt.verified and receipt.counts["learning_sessions"] == 10_000
    rt.close()
    return {"export_s": export_s, "erase_s": erase_s, "export_mb": size / 1e6}


def _reader(args: tuple) -> list[float]:
    host, port, token, pids, stop_after = args
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies = []
    end = time.perf_counter() + stop_after
    i = 0
    while time.perf_counter() < end:
        t = time.perf_counter()
        conn.request("GET", f"/v1/profiles/{pids[i % len(pids)]}", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append(time.perf_counter() - t)
        i += 1
    return latencies


def p99(latencies: list[float]) -> float:
    latencies = sorted(latencies)
    return latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000


def purge_bench(rows: int) -> dict[str, float]:
    with running_server(threads=4) as (base, token, env):
        config = Config.from_env(env)
        rt = Runtime.open(config)
        pids = []
        old = to_db(utc_now() - timedelta(days=config.session_retention_days + 30))
        per_profile = max(1, rows // 100)
        print(f"  seeding {rows:,} expired sessions ...", flush=True)
        for p in range(100):
            profile, _ = rt.profiles.create(ADMIN, None, {"user_id": f"purge-{p}", "personal": {"n": p}})
            pids.append(profile["profile_id"])
            sealer = rt.keys.writer(rt.hasher.hash(f"purge-{p}"))
            # Purging never decrypts, so one realistic-size sealed value serves every row.
            metrics = sealer.seal("learning_sessions", "performance_metrics", "shared", {"score": 1})
            kind = sealer.seal("learning_sessions", "session_type", "shared", "lesson")
            batch = [(f"old_{p}_{i}", profile["profile_id"], kind, old, metrics, metrics)
                     for i in range(per_profile)]
            rt.twin_db.write(lambda conn, batch=batch: conn.executemany(
                "INSERT INTO learning_sessions (session_id, profile_id, session_type, start_time, topics_covered, "
                "performance_metrics) VALUES (?,?,?,?,?,?)", batch))
        from twin.storage.maintenance import checkpoint
        checkpoint(rt.twin_db)
        host, port = base.removeprefix("http://").split(":")
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            baseline = pool.apply(_reader, ((host, int(port), token, pids, 3.0),))
        result: dict = {}

        def purge() -> None:
            started = time.perf_counter()
            report = rt.retention.run()
            result["seconds"] = time.perf_counter() - started
            result["purged"] = report.counts["learning_sessions"]

        with ctx.Pool(1) as pool:
            pending = pool.apply_async(_reader, ((host, int(port), token, pids, 0),))  # warm the pool
            pending.get()
            thread = threading.Thread(target=purge)
            thread.start()
            during: list[float] = []
            while thread.is_alive():
                during += pool.apply(_reader, ((host, int(port), token, pids, 1.0),))
            thread.join()
        rt.close()
    return {"rows": result["purged"], "seconds": result["seconds"],
            "rows_per_s": result["purged"] / result["seconds"],
            "p99_idle_ms": p99(baseline), "p99_during_ms": p99(during) if during else float("nan"),
            "p50_during_ms": statistics.median(during) * 1000 if during else float("nan"), "reads_during": len(during)}


def main() -> None:
    parser = argparse.ArgumentParser(description="compliance benchmarks")
    parser.add_argument("--purge-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    enc, plain = dsr_bench(False), dsr_bench(True)
    print("\nDSR for one subject with 10,000 sessions and 1,000 knowledge states (20 other subjects present)")
    print(f"  export: {enc['export_s'] * 1000:7.0f} ms  ({enc['export_mb']:.1f} MB)   plain SQLite, no field crypto: "
          f"{plain['export_s'] * 1000:6.0f} ms   target < 1000 ms")
    print(f"  erase:  {enc['erase_s'] * 1000:7.0f} ms                plain SQLite, no field crypto: "
          f"{plain['erase_s'] * 1000:6.0f} ms   target < 500 ms")
    purge = purge_bench(args.purge_rows)
    print(f"\nRetention purge of {purge['rows']:,} expired session rows: {purge['seconds']:.1f} s = "
          f"{purge['rows_per_s']:,.0f} rows/s   target >= 50,000 rows/s")
    print(f"  API GET /v1/profiles/<id> while purging: p50 {purge['p50_during_ms']:.1f} ms, p99 "
          f"{purge['p99_during_ms']:.1f} ms over {purge['reads_during']:,} reads (target p99 < 50 ms); "
          f"idle baseline p99 {purge['p99_idle_ms']:.1f} ms")


if __name__ == "__main__":
    main()
