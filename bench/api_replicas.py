"""``bench/api.py --backend postgresql --replicas N``: the learner twin on PostgreSQL, served by
1..N replicas (each one ``twin serve --workers 1`` with its own data directory, all on one
database pair), next to the SQLCipher single process (``--workers 1``) measured in the same run,
scenarios interleaved across the targets within each round.

Prints per route (create, get, session start+finish, knowledge upsert): requests/s, p50/p99,
the CPU each server process used (percent of one core, supervisor and worker together), and the
database round trips per request counted at the driver (``Backend.statement_counts``: statements
and transactions, BEGIN pipelined with the first statement counts once) for each database, in
one process on the same pair with warm caches. Targets: get-profile <= 2 round trips, create
<= 4; PostgreSQL get-profile >= 0.7x SQLCipher at one replica. Replica scaling is reported
with CPU use: on a 2-core machine shared by the clients, PostgreSQL and the replicas it cannot
show, so it is not a pass/fail target here.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _server import serving

ROUTES = ("create_profile", "get_profile", "session_start_finish", "upsert_knowledge")
REQUEST_PATH = "request path"  # round trips made while the request waited (its own thread)
COMPONENT_PREFIXES = ("AIVILLAGE_", "RAG_", "LEDGER_", "MODEL_REGISTRY_", "SETTINGS_")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (a supervisor and its worker)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _measure(bases: list[str], pids: list[int], token: str, route: str, seconds: float, clients: int,
             profiles: list[str]) -> dict[str, Any]:
    from api import _client, summary

    jobs = []
    for n in range(clients):  # clients spread evenly over the replicas
        host, port = bases[n % len(bases)].removeprefix("http://").split(":")
        jobs.append((host, int(port), token, route, seconds, profiles))
    cpu_before = [_cpu_seconds(pid) for pid in pids]
    with mp.get_context("spawn").Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.map(_client, jobs)
        wall = time.perf_counter() - started
    cpu = [(_cpu_seconds(pid) - before) / wall * 100 for pid, before in zip(pids, cpu_before)]
    return {**summary(results, seconds), "cpu": cpu}


@contextlib.contextmanager
def _database_pair(admin_url: str):
    """Two fresh databases on the server (dropped after), as TWIN_* settings."""
    import psycopg

    names = [f"twin_bench_{secrets.token_hex(5)}" for _ in range(2)]
    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"TWIN_STORAGE_BACKEND": "postgresql", "TWIN_DATABASE_URL": f"{base}/{names[0]}",
               "TWIN_VAULT_DATABASE_URL": f"{base}/{names[1]}",
               **{f"{prefix}STORAGE_BACKEND": "sqlcipher" for prefix in COMPONENT_PREFIXES}}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _set_up(env: dict[str, str], keyring: Any) -> str:
    """What `twin db setup` does, then a service token (returned)."""
    from compliance import keyring_record
    from twin.catalog import mark_learner_databases, open_learner_databases
    from twin.config import Config
    from twin.runtime import Runtime

    config = Config.from_env(env)
    data, vault = open_learner_databases(config, keyring.database_keys, migrate=True)
    mark_learner_databases(data, vault)
    keyring_record.record(vault, keyring)
    data.close_all()
    vault.close_all()
    runtime = Runtime(config, keyring)
    try:
        return runtime.tokens.issue("service", label="bench").token
    finally:
        runtime.close()


def round_trips(env: dict[str, str], keyring: Any, requests: int = 20) -> dict[str, dict[str, float]]:
    """Round trips per request of each route, per database, in one process with warm caches."""
    from twin.api.app import create_app
    from twin.config import Config
    from twin.runtime import Runtime

    runtime = Runtime(Config.from_env(env), keyring)
    try:
        for db in runtime.databases():
            db.enable_statement_counting()  # SQLite counts only when asked (a trace callback)
        client = create_app(runtime.config, runtime=runtime).test_client()
        headers = {"Authorization": "Bearer " + runtime.tokens.issue("service", label="bench-rt").token}
        pid = client.post("/v1/profiles", json={"user_id": "rt-seed", "personal": {"n": 1}},
                          headers=headers).get_json()["profile_id"]

        def call(route: str, i: int) -> None:
            if route == "create_profile":
                client.post("/v1/profiles", json={"user_id": f"rt-{i}", "personal": {"n": 1}}, headers=headers)
            elif route == "get_profile":
                client.get(f"/v1/profiles/{pid}", headers=headers)
            elif route == "session_start_finish":
                sid = client.post(f"/v1/profiles/{pid}/sessions", json={"session_type": "lesson"},
                                  headers=headers).get_json()["session_id"]
                client.patch(f"/v1/sessions/{sid}", json={"completion_status": "completed"}, headers=headers)
            else:
                client.put(f"/v1/profiles/{pid}/knowledge/math/t{i % 5}", json={"mastery_level": 0.5},
                           headers=headers)
        out = {}
        for route in ROUTES:
            for i in range(3):
                call(route, 10_000 + i)  # warm: caches, prepared keys, the token
            runtime.audit.flush()
            before = {db.name: db.statement_counts() for db in runtime.databases()}
            # The test client serves on this thread: its counts are the requests' own path;
            # the rest (audit chaining, key bindings) runs on background threads.
            mine = sum(db.counter.this_thread().round_trips for db in runtime.databases())
            for i in range(requests):
                call(route, i)
            on_path = sum(db.counter.this_thread().round_trips for db in runtime.databases()) - mine
            runtime.audit.flush()  # the batched audit writes belong to these requests
            out[route] = {db.name: (db.statement_counts() - before[db.name]).round_trips / requests
                          for db in runtime.databases()}
            out[route][REQUEST_PATH] = on_path / requests
        return out
    finally:
        runtime.close()


def main(args: Any) -> None:
    from api import seed

    from compliance.keyring import Keyring

    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-replicas-"))
    keyring = Keyring.generate()
    keyring.save(tmp / "keyring.json")
    common = {**os.environ, "TWIN_KEYRING_PATH": str(tmp / "keyring.json"), "TWIN_ENV": "development"}
    common.pop("DIGITAL_TWIN_ENCRYPTION_KEY", None)
    with _database_pair(args.admin_url) as pg, contextlib.ExitStack() as stack:
        pg_env = {**common, **pg, "TWIN_DB_POOL_SIZE": "2", "TWIN_DB_POOL_MAX_SIZE": str(args.threads + 2)}
        # Its own data directory: the runtime's component stores (settings) are files here,
        # which must not land in the working directory under a keyring of this run.
        pg_token = _set_up({**pg_env, "TWIN_DATA_DIR": str(tmp / "pg-setup" / "data")}, keyring)
        sq_procs: list = []
        sq_base = stack.enter_context(serving(common, tmp / "sqlcipher", threads=args.threads, started=sq_procs))
        from twin.config import Config
        from twin.runtime import Runtime
        runtime = Runtime.open(Config.from_env({**common, "TWIN_DATA_DIR": str(tmp / "sqlcipher" / "data")}))
        sq_token = runtime.tokens.issue("service", label="bench").token
        runtime.close()
        pg_procs: list = []
        pg_bases = [stack.enter_context(serving(pg_env, tmp / f"replica{n}", threads=args.threads,
                                                started=pg_procs)) for n in range(args.replicas)]
        targets = {"sqlcipher": ([sq_base], [p.pid for p in sq_procs], sq_token, seed(sq_base, sq_token))}
        pg_profiles = seed(pg_bases[0], pg_token)
        for n in range(1, args.replicas + 1):
            targets[f"pg x{n}"] = (pg_bases[:n], [p.pid for p in pg_procs[:n]], pg_token, pg_profiles)
        runs: dict[str, dict[str, list]] = {t: {r: [] for r in ROUTES} for t in targets}
        names = list(targets)
        for round_no in range(args.rounds):
            for route in ROUTES:
                shift = round_no % len(names)
                for name in names[shift:] + names[:shift]:
                    bases, pids, token, profiles = targets[name]
                    runs[name][route].append(_measure(bases, pids, token, route, args.seconds, args.clients,
                                                      profiles))
        trips = round_trips({**pg_env, "TWIN_DATA_DIR": str(tmp / "rt-postgresql" / "data")}, keyring)
        sq_trips = round_trips({**common, "TWIN_DATA_DIR": str(tmp / "rt-sqlcipher" / "data")}, keyring)
    _report(args, runs, trips, sq_trips)


def _report(args: Any, runs: dict, trips: dict, sq_trips: dict) -> None:
    from api import errors_line

    print(f"\nAPI on PostgreSQL: {args.clients} client processes, {args.rounds} interleaved rounds x "
          f"{args.seconds:g}s per route and target (medians), each server --workers 1 x {args.threads} "
          f"threads, {mp.cpu_count()} cores shared by clients, PostgreSQL and servers\n")
    print(f"{'route':<22}{'target':<11}{'rps':>8}{'p50 ms':>8}{'p99 ms':>8}{'failed':>8}   CPU % per server process")
    for route in ROUTES:
        for name, by_route in runs.items():
            rows = by_route[route]
            cpu = [statistics.median(r["cpu"][i] for r in rows) for i in range(len(rows[0]["cpu"]))]
            print(f"{route:<22}{name:<11}{statistics.median(r['rps'] for r in rows):>8.0f}"
                  f"{statistics.median(r['p50_ms'] for r in rows):>8.1f}"
                  f"{statistics.median(r['p99_ms'] for r in rows):>8.1f}"
                  f"{sum(sum(r['errors'].values()) for r in rows):>8}   "
                  + " ".join(f"{c:.0f}" for c in cpu))
    failures = [line for route in ROUTES for name, by_route in runs.items()
                if (line := errors_line(f"{route} {name}", by_route[route])) is not None]
    print("\nfailed requests, by status (all rounds; not in rps and latencies): " + ("none" if not failures else ""))
    for line in failures:
        print(line)
    print("\nround trips per request at the driver (warm caches), data + vault:")
    targets = {"get_profile": 2, "create_profile": 4}
    print("  (the request path: what the request waited for; the rest is background work sent in")
    print("  batches, audit chaining and key bindings, that a sequential run amortises least)")
    for route in ROUTES:
        by_db = {k: v for k, v in trips[route].items() if k != REQUEST_PATH}
        pg_total, on_path = sum(by_db.values()), trips[route][REQUEST_PATH]
        verdict = "" if route not in targets else \
            f"  target <= {targets[route]} on the request path: {'met' if on_path <= targets[route] else 'NOT MET'}"
        detail = " + ".join(f"{v:.2f} {k}" for k, v in by_db.items())
        sq_total = sum(v for k, v in sq_trips[route].items() if k != REQUEST_PATH)
        print(f"  {route:<22} postgresql {pg_total:5.2f} ({detail}), {on_path:.2f} on the request path; "
              f"sqlcipher {sq_total:5.2f}{verdict}")
    values = [p["rps"] / s["rps"] for p, s in zip(runs["pg x1"]["get_profile"], runs["sqlcipher"]["get_profile"])]
    ratio = statistics.median(values)
    print(f"\nget_profile pg x1 / sqlcipher: {min(values):.2f}x {ratio:.2f}x {max(values):.2f}x "
          f"(min/median/max)  target >= 0.7x: {'met' if ratio >= 0.7 else 'NOT MET'}")
    if args.replicas > 1:
        for route in ROUTES:
            base = statistics.median(r["rps"] for r in runs["pg x1"][route])
            scaled = [f"x{n} {statistics.median(r['rps'] for r in runs[f'pg x{n}'][route]) / base:.2f}"
                      for n in range(2, args.replicas + 1)]
            print(f"  replica scaling {route:<22} " + ", ".join(scaled) + " (of one replica; CPU above)")
