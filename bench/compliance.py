"""Compliance benchmarks: DSR export and erasure as a subject's history grows, and the
retention purge under read load. Each figure is printed next to a baseline measured in the same
run, with min/median/max over interleaved rounds.

1. DSR export and erase of one subject with 1k, 10k and 100k sessions (and 100 knowledge
   states), with field encryption and without it (``TWIN_BENCH_PLAINTEXT``: same code, no
   crypto): the curve, and the export's peak Python memory (flat: it streams).
   Targets: export 10k < 0.5 s, 100k < 5 s; erase 100k < 1 s.
2. Start-up with 0 and 100k erasure tombstones (target < 2 s, independent of the count), and
   with every tombstone re-applied (what every start cost before; now only after a restore).
3. Retention purge throughput for 1M expired session rows (target >= 50k rows/s), with the
   API's p99 latency for profile reads measured while the purge runs (target < 50 ms), next
   to the same reads with no purge running.

    .venv/bin/python bench/compliance.py [--rounds 3] [--sizes 1000,10000,100000] [--tombstones 100000]
                                         [--purge-rows 1000000]
                                         [--only dsr|startup|purge]
    .venv/bin/python bench/compliance.py --quick     # smoke run: small sizes, 3 rounds
    .venv/bin/python bench/compliance.py --before ../base [--after DIR] [--sizes ...] [--only dsr|purge]

``--before DIR``: the same measures of another checkout (its own .venv) next to this tree's, in
one sitting with interleaved rounds, as after/before ratios (``bench/compliance_revisions.py``;
only what both trees measure: DSR export and erase, the purge's rows/s).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _server import running_server
from compliance_side import fill_subject, seed_expired

from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime
from twin.storage.maintenance import truncate_wal
from twin.storage.timestamps import to_db, utc_now

ADMIN = Actor("bench", "admin")


def _dsr_runtime(plaintext: bool, sessions: int, rounds: int) -> Runtime:
    """A runtime whose database holds ``rounds`` subjects of ``sessions`` sessions (one erased
    per round) among 20 others."""
    d = Path(tempfile.mkdtemp(prefix="twin-bench-dsr-"))
    rt = Runtime(Config(env="test", data_dir=d, keyring_path=d / "k.json", bench_plaintext=plaintext),
                 Keyring.generate())
    for n in range(20):  # other subjects, so the subject's rows are not the whole file
        fill_subject(rt, f"other-{n}", 500, 50)
    for r in range(rounds):
        fill_subject(rt, f"subject-{r}", sessions, 100)
    truncate_wal(rt.twin_db)
    return rt


def _dsr_round(rt: Runtime, user_id: str, sessions: int) -> dict[str, float]:
    start = time.perf_counter()
    size = sum(len(chunk) for chunk in rt.subject_requests.export(ADMIN, None, user_id))
    export_s = time.perf_counter() - start
    tracemalloc.start()
    for _ in rt.subject_requests.export(ADMIN, None, user_id):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    start = time.perf_counter()
    receipt = rt.subject_requests.erase(ADMIN, None, user_id=user_id)
    erase_s = time.perf_counter() - start
    assert receipt.verified and receipt.counts["learning_sessions"] == sessions, receipt
    return {"export_s": export_s, "erase_s": erase_s, "export_mb": size / 1e6, "peak_mb": peak / 1e6}


def dsr_curve(sizes: list[int], rounds: int) -> dict[int, dict[str, dict[str, list[float]]]]:
    """Per size, per mode (encrypted, plain): each measure over ``rounds`` interleaved rounds."""
    results: dict[int, dict[str, dict[str, list[float]]]] = {}
    for sessions in sizes:
        print(f"  seeding {rounds} subjects of {sessions:,} sessions, encrypted and plain ...", flush=True)
        runtimes = {"encrypted": _dsr_runtime(False, sessions, rounds), "plain": _dsr_runtime(True, sessions, rounds)}
        results[sessions] = {mode: {} for mode in runtimes}
        for r in range(rounds):
            for mode, rt in runtimes.items():
                for measure, value in _dsr_round(rt, f"subject-{r}", sessions).items():
                    results[sessions][mode].setdefault(measure, []).append(value)
        for rt in runtimes.values():
            rt.close()
    return results


def _spread(values: list[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    values = sorted(v * scale for v in values)
    return "/".join(fmt.format(v) for v in (values[0], statistics.median(values), values[-1]))


def print_dsr(results: dict[int, dict[str, dict[str, list[float]]]]) -> None:
    print("\nDSR of one subject as the history grows (100 knowledge states; 20 other subjects present)")
    print("  min/median/max ms over rounds; ratio = encrypted median / plain median (same code, no field crypto)")
    print(f"  {'sessions':>9} | {'export ms':>17} {'plain':>17} {'ratio':>5} {'MB':>5} {'peak MB':>7}"
          f" | {'erase ms':>17} {'plain':>17} {'ratio':>5}")
    targets = {10_000: ("export", 0.5), 100_000: ("export", 5.0)}
    for sessions, modes in results.items():
        enc, plain = modes["encrypted"], modes["plain"]
        print(f"  {sessions:>9,} | {_spread(enc['export_s'], 1000):>17} {_spread(plain['export_s'], 1000):>17} "
              f"{statistics.median(enc['export_s']) / statistics.median(plain['export_s']):>5.2f} "
              f"{statistics.median(enc['export_mb']):>5.1f} {max(enc['peak_mb']):>7.2f} | "
              f"{_spread(enc['erase_s'], 1000):>17} {_spread(plain['erase_s'], 1000):>17} "
              f"{statistics.median(enc['erase_s']) / statistics.median(plain['erase_s']):>5.2f}")
    for sessions, modes in results.items():
        export, erase = statistics.median(modes["encrypted"]["export_s"]), statistics.median(modes["encrypted"]["erase_s"])
        if sessions in targets:
            print(f"  export of {sessions:,} sessions: median {export:.2f} s, target < {targets[sessions][1]} s "
                  f"({'met' if export < targets[sessions][1] else 'NOT met'})")
        if sessions == 100_000:
            print(f"  erase of {sessions:,} sessions: median {erase:.2f} s, target < 1 s "
                  f"({'met' if erase < 1 else 'NOT met'})")
    peaks = [max(m["encrypted"]["peak_mb"]) for m in results.values()]
    print(f"  export peak Python memory from {min(results):,} to {max(results):,} sessions: "
          f"{peaks[0]:.2f} -> {peaks[-1]:.2f} MB (flat: streamed)")


def _startup_deployment(tombstones: int) -> tuple[Config, Keyring]:
    """A deployment whose vault holds ``tombstones`` completed erasures (rows as erasures leave
    them) and 20 live subjects, started once (so its erasure generations are recorded)."""
    d = Path(tempfile.mkdtemp(prefix="twin-bench-start-"))
    config = Config(env="test", data_dir=d, keyring_path=d / "k.json")
    keyring = Keyring.generate()
    keyring.save(config.keyring_path)
    rt = Runtime(config, keyring)
    for n in range(20):
        fill_subject(rt, f"live-{n}", 50, 5)
    now = to_db(utc_now())
    rows = [(rt.hasher.hash(f"erased-{i}"), f"rcpt_bench{i}", now, '{"learning_profiles": 1}', now)
            for i in range(tombstones)]
    rt.vault_db.write(lambda conn: conn.executemany(
        "INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts, completed_at) "
        "VALUES (?, ?, ?, ?, ?)", rows))
    rt.close()
    Runtime.open(config).close()  # the first start applies every tombstone and records the generations
    return config, keyring


def _start_s(config: Config, *, every: bool) -> float:
    started = time.perf_counter()
    Runtime.open(config, reapply_every_tombstone=every).close()
    return time.perf_counter() - started


def startup_bench(tombstones: int, rounds: int) -> dict[str, list[float]]:
    """Start-up (open, migrate, chain staged audit events, tombstones) with none and with
    ``tombstones`` erasure tombstones, and with every tombstone re-applied (what each start
    cost before the generation check, and what a start after a restore costs), interleaved."""
    print(f"  seeding {tombstones:,} erasure tombstones ...", flush=True)
    none, many = _startup_deployment(0), _startup_deployment(tombstones)
    results: dict[str, list[float]] = {"none": [], "many": [], "many_every": []}
    for _ in range(rounds):
        results["none"].append(_start_s(none[0], every=False))
        results["many"].append(_start_s(many[0], every=False))
        results["many_every"].append(_start_s(many[0], every=True))
    return results


def print_startup(tombstones: int, results: dict[str, list[float]]) -> None:
    median = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nStart-up (Runtime.open: open, migrate, staged audit events, erasure tombstones), "
          f"min/median/max ms")
    print(f"  0 tombstones:                     {_spread(results['none'], 1000):>17}")
    print(f"  {tombstones:,} tombstones, plain start:   {_spread(results['many'], 1000):>17}   "
          f"ratio to 0 tombstones {median['many'] / median['none']:.2f}   target < 2 s, independent of the count "
          f"({'met' if median['many'] < 2 else 'NOT met'})")
    print(f"  {tombstones:,} tombstones, every one re-applied (after a restore; every start before): "
          f"{_spread(results['many_every'], 1000)}   ratio {median['many_every'] / median['none']:.2f}")


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


def _purge_round(rt: Runtime, reader_args: tuple, pool: Any, rows: int, tag: str, idle_s: float) -> dict[str, float]:
    """Seed, read idle for ``idle_s`` (the baseline), then purge while reading."""
    seed_expired(rt, reader_args[3], rows, tag)
    idle = pool.apply(_reader, (reader_args[:4] + (idle_s,),))
    result: dict = {}

    def purge() -> None:
        started = time.perf_counter()
        report = rt.retention.run()
        result["seconds"] = time.perf_counter() - started
        result["purged"] = report.counts["learning_sessions"]

    thread = threading.Thread(target=purge)
    thread.start()
    during: list[float] = []
    while thread.is_alive():
        during += pool.apply(_reader, (reader_args[:4] + (0.5,),))
    thread.join()
    return {"rows_per_s": result["purged"] / result["seconds"], "purged": result["purged"],
            "p99_idle_ms": p99(idle), "p99_during_ms": p99(during) if during else float("nan"),
            "p50_during_ms": statistics.median(during) * 1000 if during else float("nan"),
            "reads_during": len(during)}


def purge_bench(rows: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Retention purges of ``rows`` expired sessions, with API reads meanwhile, on an encrypted
    server and on a plain one (same code, no encryption: the baseline), in interleaved rounds;
    before each purge the same reads run idle for the read baseline."""
    results: dict[str, dict[str, list[float]]] = {"encrypted": {}, "plain": {}}
    ctx = mp.get_context("spawn")
    with contextlib.ExitStack() as stack:
        setups = {}
        for mode in results:
            base, token, env = stack.enter_context(running_server(threads=4, plaintext=mode == "plain"))
            rt = Runtime.open(Config.from_env(env))
            stack.callback(rt.close)
            pids = [rt.profiles.create(ADMIN, None, {"user_id": f"purge-{p}", "personal": {"n": p}})[0]["profile_id"]
                    for p in range(100)]
            host, port = base.removeprefix("http://").split(":")
            setups[mode] = (rt, (host, int(port), token, pids))
        pool = stack.enter_context(ctx.Pool(1))
        for mode, (_, args) in setups.items():
            pool.apply(_reader, (args + (0.2,),))  # warm the pool and each server
        for r in range(rounds):
            print(f"  round {r + 1}: seeding and purging {rows:,} expired sessions, encrypted and plain ...", flush=True)
            for mode, (rt, args) in setups.items():
                measured = _purge_round(rt, args, pool, rows, f"r{r}", idle_s=1.0 if rows < 100_000 else 3.0)
                for measure, value in measured.items():
                    results[mode].setdefault(measure, []).append(value)
    return results


def print_purge(rows: int, results: dict[str, dict[str, list[float]]]) -> None:
    enc, plain = results["encrypted"], results["plain"]
    median = statistics.median
    print(f"\nRetention purge of {rows:,} expired session rows, min/median/max over {len(enc['rows_per_s'])} "
          f"interleaved rounds; baseline: the same purge with no encryption (plain)")
    print(f"  rows/s   encrypted {_spread(enc['rows_per_s'], fmt='{:,.0f}'):>24}   plain {_spread(plain['rows_per_s'], fmt='{:,.0f}'):>24}   "
          f"ratio {median(enc['rows_per_s']) / median(plain['rows_per_s']):.2f}")
    print(f"  API GET /v1/profiles/<id> p99 ms while purging: encrypted {_spread(enc['p99_during_ms'], fmt='{:.1f}')} "
          f"(idle {_spread(enc['p99_idle_ms'], fmt='{:.1f}')}, ratio {median(enc['p99_during_ms']) / median(enc['p99_idle_ms']):.2f}); "
          f"plain {_spread(plain['p99_during_ms'], fmt='{:.1f}')} (idle {_spread(plain['p99_idle_ms'], fmt='{:.1f}')}); "
          f"p50 {median(enc['p50_during_ms']):.1f} ms over {int(median(enc['reads_during'])):,} reads a round")
    rate, p99_during = median(enc["rows_per_s"]), median(enc["p99_during_ms"])
    print(f"  targets: >= 50,000 rows/s ({'met' if rate >= 50_000 else 'NOT met'}: median {rate:,.0f}); "
          f"read p99 < 50 ms meanwhile ({'met' if p99_during < 50 else 'NOT met'}: median {p99_during:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description="compliance benchmarks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,100000", help="sessions per subject, comma-separated")
    parser.add_argument("--tombstones", type=int, default=100_000)
    parser.add_argument("--purge-rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1k and 5k sessions, 2k tombstones, 20k purge rows, 3 rounds")
    parser.add_argument("--only", choices=["dsr", "startup", "purge"], help="run one part only")
    parser.add_argument("--before", type=Path, help="another checkout (with .venv): after/before ratios")
    parser.add_argument("--after", type=Path, help="with --before: a checkout to use instead of this tree")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sizes, args.purge_rows, args.tombstones = 3, "1000,5000", 20_000, 2_000
    args.rounds = max(3, args.rounds)  # min/median/max need three
    if args.before is not None:
        if args.only == "startup":
            parser.error("--before compares dsr and purge only (the release re-applied every tombstone at start)")
        import compliance_revisions
        compliance_revisions.main(args)
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    if args.only in (None, "dsr"):
        print_dsr(dsr_curve([int(n) for n in args.sizes.split(",")], args.rounds))
    if args.only in (None, "startup"):
        print_startup(args.tombstones, startup_bench(args.tombstones, args.rounds))
    if args.only in (None, "purge"):
        print_purge(args.purge_rows, purge_bench(args.purge_rows, args.rounds))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
