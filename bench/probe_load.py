"""Probes under load: /healthz and /readyz latency while 400 keep-alive clients saturate a data route.

Client processes hold ``--connections`` keep-alive connections to the real server (``twin
serve``, ``--workers`` processes) and send get-profile requests back to back for
``--seconds``; meanwhile a prober opens a fresh connection every 100 ms, like an orchestrator,
for ``/healthz`` and ``/readyz``. Prints probe latency (target: every /healthz under 1 s) next
to the data route's throughput, measured in the same run.

    .venv/bin/python bench/probe_load.py [--connections 400] [--seconds 30] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from collections import Counter

TARGET_S = 1.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _keepalive_client(host: str, port: int, requests: list[bytes], seconds: float,
                            statuses: Counter) -> bool:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        statuses["connect-failed"] += 1
        return False
    end, i = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < end:
            writer.write(requests[i % len(requests)])
            await writer.drain()
            statuses[await asyncio.wait_for(_read_response(reader), 60)] += 1
            i += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        statuses["dropped"] += 1
    finally:
        writer.close()
    return True


def _client_process(args: tuple) -> tuple[int, dict]:
    host, port, token, profile_ids, connections, seconds = args
    requests = [(f"GET /v1/profiles/{pid} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: keep-alive\r\n\r\n").encode() for pid in profile_ids]
    statuses: Counter = Counter()

    async def main() -> int:
        results = await asyncio.gather(*(_keepalive_client(host, port, requests, seconds, statuses)
                                         for _ in range(connections)))
        return sum(results)

    opened = asyncio.run(main())
    return opened, dict(statuses)


async def _probe(host: str, port: int, path: str) -> tuple[float, int | str]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status: int | str = await asyncio.wait_for(_read_response(reader), 10)
        writer.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        status = type(exc).__name__
    return time.perf_counter() - started, status


def _probe_loop(host: str, port: int, seconds: float, interval: float = 0.1) -> dict[str, list]:
    async def main() -> dict[str, list]:
        seen: dict[str, list] = {"/healthz": [], "/readyz": []}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for path in seen:
                seen[path].append(await _probe(host, port, path))
            await asyncio.sleep(interval)
        return seen
    return asyncio.run(main())


def run_load(host: str, port: int, token: str, profile_ids: list[str], *, connections: int = 400,
             seconds: float = 30.0, processes: int = 2, warmup: float = 2.0) -> dict:
    """Hold ``connections`` keep-alive clients on the data route for ``seconds`` and probe meanwhile."""
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    with mp.get_context("spawn").Pool(processes) as pool:
        pending = pool.map_async(_client_process, [(host, port, token, profile_ids, n, seconds + warmup)
                                                   for n in per])
        time.sleep(warmup)  # every connection open and busy before probing
        started = time.monotonic()
        probes = _probe_loop(host, port, seconds)
        results = pending.get(seconds + warmup + 120)
        elapsed = time.monotonic() - started + warmup
    statuses: Counter = Counter()
    for _, counts in results:
        statuses.update(counts)
    return {"opened": sum(opened for opened, _ in results), "statuses": dict(statuses),
            "data_rps": statuses[200] / elapsed, "probes": probes}


def summarise(result: dict) -> list[str]:
    lines = [f"data route GET /v1/profiles/<id>: {result['data_rps']:.0f} req/s over "
             f"{result['opened']} keep-alive connections; statuses {result['statuses']}"]
    for path, samples in result["probes"].items():
        times = sorted(t for t, status in samples if status == 200)
        failed = [status for _, status in samples if status != 200]
        if not times:
            lines.append(f"{path}: no successful probe ({failed[:5]})")
            continue
        slow = sum(1 for t in times if t >= TARGET_S) + len(failed)
        lines.append(f"{path}: {len(samples)} probes, p50 {statistics.median(times) * 1000:.1f} ms, "
                     f"p99 {times[max(0, int(len(times) * 0.99) - 1)] * 1000:.1f} ms, max "
                     f"{times[-1] * 1000:.1f} ms; {slow} at or over {TARGET_S:.0f} s or failed "
                     f"{'(target met)' if slow == 0 else '(TARGET NOT MET)'}")
    return lines


def main() -> None:
    from _server import running_server
    from api import seed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=None, help="server workers (default: CPUs)")
    parser.add_argument("--threads", type=int, default=8, help="server threads per worker")
    args = parser.parse_args()
    with running_server(threads=args.threads, workers=args.workers) as (base, token, _):
        host, port = base.removeprefix("http://").split(":")
        result = run_load(host, int(port), token, seed(base, token), connections=args.connections,
                          seconds=args.seconds, processes=args.processes)
    print(f"\nProbe latency under load: {args.connections} keep-alive clients for {args.seconds:.0f} s, "
          f"server workers {args.workers or 'one per CPU'} x {args.threads} threads, "
          f"{mp.cpu_count()} cores shared by clients and server\n")
    print("\n".join(summarise(result)))
    print(json.dumps({"data_rps": round(result["data_rps"])}))


if __name__ == "__main__":
    main()
