"""API throughput and latency on the real server, driven from separate client processes.

Prints requests/s and p50/p99 latency for: create profile, get profile, start + finish session,
upsert knowledge, next to the same server's bare /healthz, and next to the same routes with
SQLCipher and field encryption switched off (TWIN_BENCH_PLAINTEXT, a benchmark-only flag).
Targets: privacy stack costs at most 15% of throughput; get-profile >= 50% of /healthz.

    .venv/bin/python bench/api.py [--seconds 4] [--clients 8]
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

from _server import running_server

SCENARIOS = ("healthz", "create_profile", "get_profile", "session_start_finish", "upsert_knowledge")


def _client(args: tuple) -> tuple[int, list[float]]:
    host, port, token, scenario, seconds, seed_profiles = args
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status} {data[:200]!r}")
        return json.loads(data) if data else {}

    latencies: list[float] = []
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        pid = seed_profiles[i % len(seed_profiles)]
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
        latencies.append(time.perf_counter() - start)
        i += 1
    conn.close()
    return len(latencies), latencies


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
    latencies = sorted(x for _, lat in results for x in lat)
    count = len(latencies)
    # Pool start-up is excluded: each client ran for `seconds`.
    return {"rps": count / seconds, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(count * 0.99) - 1] * 1000, "requests": count, "wall_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario, per round")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (medians are reported)")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="run only these scenarios (healthz is always included)")
    args = parser.parse_args()
    scenarios = tuple(s for s in SCENARIOS if s == "healthz" or s in args.only)
    runs: dict[str, dict[str, list[dict]]] = {m: {s: [] for s in scenarios} for m in ("privacy", "plain")}
    # Both servers run at once and every scenario alternates privacy/plain within each round,
    # so background noise on a shared machine hits both sides alike.
    with running_server(threads=args.threads) as (priv_base, priv_token, _), \
            running_server(plaintext=True, threads=args.threads) as (plain_base, plain_token, _):
        targets = {"privacy": (priv_base, priv_token, seed(priv_base, priv_token)),
                   "plain": (plain_base, plain_token, seed(plain_base, plain_token))}
        for round_no in range(args.rounds):
            for s in scenarios:
                order = ("privacy", "plain") if round_no % 2 == 0 else ("plain", "privacy")
                for mode in order:
                    base, token, profiles = targets[mode]
                    runs[mode][s].append(measure(base, token, s, args.seconds, args.clients, profiles))
    results = {m: {s: {k: statistics.median(r[k] for r in runs[m][s]) for k in ("rps", "p50_ms", "p99_ms")}
                   for s in scenarios} for m in runs}
    print(f"\nAPI benchmark: {args.clients} client processes, {args.rounds} interleaved rounds x "
          f"{args.seconds:.0f}s per scenario and mode (medians), server threads {args.threads}, "
          f"{mp.cpu_count()} cores shared by clients and servers\n")
    print(f"{'scenario':<22}{'privacy rps':>12}{'p50 ms':>8}{'p99 ms':>8}{'plain rps':>11}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'privacy/plain':>15}")
    for s in scenarios:
        p, q = results["privacy"][s], results["plain"][s]
        print(f"{s:<22}{p['rps']:>12.0f}{p['p50_ms']:>8.1f}{p['p99_ms']:>8.1f}{q['rps']:>11.0f}{q['p50_ms']:>8.1f}"
              f"{q['p99_ms']:>8.1f}{p['rps'] / q['rps']:>14.2f}x")
    cost = {s: 1 - results["privacy"][s]["rps"] / results["plain"][s]["rps"] for s in scenarios if s != "healthz"}
    print("\nprivacy stack cost per data route (target <= 15% each):")
    for s, c in cost.items():
        print(f"  {s:<22} {c * 100:5.1f}%   {'met' if c <= 0.15 else 'NOT MET'}")
    print(f"  mean                   {statistics.mean(cost.values()) * 100:5.1f}%")
    if "get_profile" in scenarios:
        ratio = results["privacy"]["get_profile"]["rps"] / results["privacy"]["healthz"]["rps"]
        print(f"get_profile / healthz throughput (privacy on): {ratio:.2f}x   target >= 0.50x   "
              f"{'met' if ratio >= 0.5 else 'NOT MET'}")

if __name__ == "__main__":
    main()
