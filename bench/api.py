"""API throughput and latency on the real server, driven from separate client processes.

Prints requests/s and p50/p99 latency for: create profile, get profile, start + finish session,
upsert knowledge, next to the same server's bare /healthz, against three baselines measured in
the same run, every scenario interleaved across them within each round:
- plain: the same server with SQLCipher and field encryption off (TWIN_BENCH_PLAINTEXT, a
  benchmark-only flag): the privacy stack's cost (target: at most 15% per route);
- full: the same server with TWIN_DURABILITY=full (fsync per commit and per staged audit
  event): what surviving a power loss costs;
- peer: bench/peer_app.py, a minimal Flask + sqlite3 app with the same create/get routes on the
  same server and workers: our throughput as a ratio of it (targets: create >= 0.6x, get >= 0.8x).
Ratios are printed as min / median / max over the rounds. Also get-profile / /healthz (>= 0.6x).

    .venv/bin/python bench/api.py [--seconds 3] [--rounds 3] [--clients 4] [--workers N]
    .venv/bin/python bench/api.py --backend postgresql --replicas 2   (bench/api_replicas.py)

``--quick``: a smoke run (short rounds, two clients) that only shows the script works.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import statistics
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from _server import running_peer, running_server

SCENARIOS = ("healthz", "create_profile", "get_profile", "session_start_finish", "upsert_knowledge")


class _Failed(Exception):
    """A request that did not succeed: its status, or the connection error's name."""


def _client(args: tuple) -> tuple[int, list[float], dict[str, int]]:
    """One client process: (requests that succeeded, their latencies, failures by status)."""
    host, port, token, scenario, seconds, seed_profiles = args
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        nonlocal conn
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            raise _Failed(type(exc).__name__) from None
        if response.status >= 300:
            raise _Failed(str(response.status))
        return json.loads(data) if data else {}

    latencies: list[float] = []
    errors: dict[str, int] = {}
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        pid = seed_profiles[i % len(seed_profiles)]
        i += 1
        try:
            _scenario(call, scenario, pid, i - 1)
        except _Failed as failure:  # counted and reported per route: the run goes on
            errors[failure.args[0]] = errors.get(failure.args[0], 0) + 1
        else:
            latencies.append(time.perf_counter() - start)
    conn.close()
    return len(latencies), latencies, errors


def _scenario(call: Any, scenario: str, pid: str, i: int) -> None:
    if scenario == "healthz":
        call("GET", "/healthz")
    elif scenario == "create_profile":
        call("POST", "/v1/profiles", {"user_id": f"bench-{uuid.uuid4()}", "personal": {"name": "Bench User"},
                                      "learning_goals": ["fractions"], "knowledge_domains": ["math"]})
    elif scenario == "get_profile":
        call("GET", f"/v1/profiles/{pid}")
    elif scenario == "session_start_finish":
        sid = call("POST", f"/v1/profiles/{pid}/sessions", {"session_type": "lesson", "topics_covered": ["a"]})["session_id"]
        finished = datetime.now(timezone.utc).isoformat()
        call("PATCH", f"/v1/sessions/{sid}", {"end_time": finished, "engagement_score": 0.7,
                                             "performance_metrics": {"score": 0.9}, "completion_status": "completed"})
    elif scenario == "upsert_knowledge":
        call("PUT", f"/v1/profiles/{pid}/knowledge/math/topic-{i % 50}",
             {"mastery_level": 0.5, "confidence_score": 0.4, "learning_trajectory": {"step": i}})


def seed(base: str, token: str, n: int = 40) -> list[str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    ids = []
    for _ in range(n):
        conn.request("POST", "/v1/profiles", body=json.dumps({"user_id": f"seed-{uuid.uuid4()}", "personal": {"n": 1}}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        ids.append(json.loads(conn.getresponse().read())["profile_id"])
    return ids


def measure(base: str, token: str, scenario: str, seconds: float, clients: int, profiles: list[str]) -> dict:
    host, port = base.removeprefix("http://").split(":")
    with mp.get_context("spawn").Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.map(_client, [(host, int(port), token, scenario, seconds, profiles)] * clients)
        elapsed = time.perf_counter() - started
    # Pool start-up is excluded: each client ran for `seconds`.
    return {**summary(results, seconds), "wall_s": elapsed}


def summary(results: list[tuple[int, list[float], dict[str, int]]], seconds: float) -> dict[str, Any]:
    """Requests/s, p50/p99 of the requests that succeeded, and the failures by status."""
    latencies = sorted(x for _, lat, _ in results for x in lat)
    count = len(latencies)
    errors: dict[str, int] = {}
    for _, _, failed in results:
        for status, n in failed.items():
            errors[status] = errors.get(status, 0) + n
    return {"rps": count / seconds,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p99_ms": latencies[max(0, int(count * 0.99) - 1)] * 1000 if latencies else float("nan"),
            "requests": count, "errors": errors}


def errors_line(label: str, runs: list[dict[str, Any]]) -> str | None:
    """``label: 503 x2, ...`` over every run of a route, or None when none failed."""
    total: dict[str, int] = {}
    for run in runs:
        for status, n in run["errors"].items():
            total[status] = total.get(status, 0) + n
    if not total:
        return None
    requests = sum(run["requests"] for run in runs) + sum(total.values())
    return f"  {label}: " + ", ".join(f"{status} x{n}" for status, n in sorted(total.items())) + \
        f" of {requests} requests"


MODES = ("privacy", "plain", "full", "peer")
PEER_SCENARIOS = ("healthz", "create_profile", "get_profile")


def _ratios(runs: dict, mode: str, base: str, scenario: str) -> tuple[float, float, float]:
    """min / median / max over rounds of mode's throughput divided by base's (same round)."""
    values = [a["rps"] / b["rps"] for a, b in zip(runs[mode][scenario], runs[base][scenario])]
    return min(values), statistics.median(values), max(values)


def _print_ratio(label: str, ratio: tuple[float, float, float], target: str = "", met: bool | None = None) -> None:
    verdict = "" if met is None else ("met" if met else "NOT MET")
    print(f"  {label:<46}{ratio[0]:>6.2f}x {ratio[1]:>6.2f}x {ratio[2]:>6.2f}x   {target:<12}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario, per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="server threads per worker")
    parser.add_argument("--workers", type=int, default=None, help="server workers (default: CPUs)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="run only these scenarios (healthz is always included)")
    parser.add_argument("--backend", choices=("sqlcipher", "postgresql"), default="sqlcipher",
                        help="postgresql: the replicas benchmark (bench/api_replicas.py)")
    parser.add_argument("--replicas", type=int, default=2, help="with --backend postgresql: up to N replicas")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="with --backend postgresql: an account that may create databases")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 0.5 s, 2 clients")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.clients = 0.5, 1, 2
    if args.backend == "postgresql":
        import api_replicas
        api_replicas.main(args)
        return
    scenarios = tuple(s for s in SCENARIOS if s == "healthz" or s in args.only)
    runs: dict[str, dict[str, list[dict]]] = {m: {s: [] for s in scenarios} for m in MODES}
    served = dict(threads=args.threads, workers=args.workers)
    # Every server runs at once and each scenario rotates through them within each round, so
    # background noise on a shared machine hits every side alike.
    with running_server(**served) as (priv_base, priv_token, _), \
            running_server(plaintext=True, **served) as (plain_base, plain_token, _), \
            running_server(extra_env={"TWIN_DURABILITY": "full"}, **served) as (full_base, full_token, _), \
            running_peer(**served) as (peer_base, peer_token):
        targets = {"privacy": (priv_base, priv_token), "plain": (plain_base, plain_token),
                   "full": (full_base, full_token), "peer": (peer_base, peer_token)}
        targets = {m: (b, t, seed(b, t)) for m, (b, t) in targets.items()}
        for round_no in range(args.rounds):
            for s in scenarios:
                modes = [m for m in MODES if m != "peer" or s in PEER_SCENARIOS]
                shift = round_no % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    base, token, profiles = targets[mode]
                    runs[mode][s].append(measure(base, token, s, args.seconds, args.clients, profiles))
    median = {m: {s: {k: statistics.median(r[k] for r in runs[m][s]) for k in ("rps", "p50_ms", "p99_ms")}
                  for s in scenarios if runs[m][s]} for m in MODES}
    print(f"\nAPI benchmark: {args.clients} client processes, {args.rounds} interleaved rounds x "
          f"{args.seconds:g}s per scenario and server (medians), server workers "
          f"{args.workers or 'one per CPU'} x {args.threads} threads, {mp.cpu_count()} cores shared by "
          "clients and servers\n")
    print(f"{'scenario':<22}" + "".join(f"{m + ' rps':>12}{'p50':>7}{'p99':>7}" for m in MODES))
    for s in scenarios:
        cells = "".join(f"{median[m][s]['rps']:>12.0f}{median[m][s]['p50_ms']:>7.1f}{median[m][s]['p99_ms']:>7.1f}"
                        if s in median[m] else f"{'-':>12}{'':>7}{'':>7}" for m in MODES)
        print(f"{s:<22}{cells}")
    failures = [line for s in scenarios for m in MODES
                if (line := errors_line(f"{s} {m}", runs[m][s])) is not None]
    print("\nfailed requests (not in the figures above): " + ("none" if not failures else ""))
    for line in failures:
        print(line)
    print(f"\nratios, min / median / max over {args.rounds} rounds:")
    data = [s for s in scenarios if s != "healthz"]
    for s in data:
        ratio = _ratios(runs, "privacy", "plain", s)
        _print_ratio(f"{s} privacy / plain", ratio, "cost <= 15%", 1 - ratio[1] <= 0.15)
    for s in data:
        if s in ("create_profile", "session_start_finish", "upsert_knowledge"):
            ratio = _ratios(runs, "full", "privacy", s)
            _print_ratio(f"{s} full / normal durability", ratio)
    for s, target in (("create_profile", 0.6), ("get_profile", 0.8)):
        if s in scenarios:
            ratio = _ratios(runs, "privacy", "peer", s)
            _print_ratio(f"{s} ours / peer app", ratio, f">= {target}x", ratio[1] >= target)
    if "get_profile" in scenarios:
        values = [g["rps"] / h["rps"] for g, h in zip(runs["privacy"]["get_profile"], runs["privacy"]["healthz"])]
        ratio = (min(values), statistics.median(values), max(values))
        _print_ratio("get_profile / healthz (ours)", ratio, ">= 0.6x", ratio[1] >= 0.6)


if __name__ == "__main__":
    main()
