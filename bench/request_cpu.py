"""CPU per request in one process, through the WSGI app (no sockets, no server), for this tree
and optionally another checkout, as a ratio: a loaded machine cannot tell 10% apart in
requests/s, but it can in CPU time, and not at all in instruction counts.

What one request costs: the app as ``twin serve`` builds it (access log at INFO, written to
/dev/null; prometheus-client in multiprocess mode), a warm profile read
(``GET /v1/profiles/{id}``), a session start + finish (``POST .../sessions`` then
``PATCH /v1/sessions/{id}``, counted as one pair) and a knowledge upsert (``PUT
.../knowledge/{domain}/{topic}``, a manual value, each profile's one topic set again), an evidence
batch (``POST .../evidence``, 10 new observations over 2 topics), a parental consent recorded
(``POST .../consents``), with the
audit events chained every 30 requests (about the batch a 50 ms flush delay gathers at 600
requests/s) rather than by the timing-dependent flusher thread. A create (``POST /v1/profiles`` of a new user) takes its
subject key from the process's lease: the lease is refilled, and its bindings recorded, when it
runs out rather than by its timing-dependent threads, so the count includes that work too.
``--plain`` measures the same requests with SQLCipher and field crypto off (TWIN_BENCH_PLAINTEXT,
as ``bench/api.py``'s plain server): the privacy stack's cost is the ratio of the two.

    .venv/bin/python bench/request_cpu.py [--before ../base] [--rounds 5] [--n 300]
    .venv/bin/python bench/request_cpu.py --callgrind [--before ../base]   # instructions
    .venv/bin/python bench/request_cpu.py --callgrind --only chain [--batch 60] [--before ../base]
    .venv/bin/python bench/request_cpu.py --only create --plain   # the privacy cost of a create
    .venv/bin/python bench/request_cpu.py --only create --plain --threads 4   # as a threaded server

``--threads N`` hands the requests round N threads, one at a time, as a threaded server's pool
does: each thread reads with its own connection, whose page cache SQLite drops when another
connection wrote the file (SQLCipher then decrypts every page it reads again).
``--concurrent N`` sends them from N threads at once, as a busy threaded server gets them:
writes that meet in one process can then share a commit (``Database.write_shared``), and each
page they both dirty is encrypted and authenticated once.

"chain" counts only ``audit.flush``: moving staged events (get-profile's, ``--batch`` per
flush) from the journal into the vault's hash chain, per event: what a server's flusher
thread spends for every audited request.

``--callgrind`` runs each measurement under ``valgrind --tool=callgrind`` and counts the
instructions of the measured loop alone (deterministic whatever the load: what expires with the
wall clock, which valgrind and the load stretch, is kept out of the loop; kernel time, e.g.
SQLCipher's writes, is not counted); without it the figure is ``time.process_time`` (every
thread of the process), the minimum over ``--rounds``. Under valgrind OpenSSL does not see the
CPU's SHA extensions and hashes in AVX2: SQLCipher's HMAC-SHA256 page authentication counts many
times what it costs natively, so a privacy/plain ratio of instructions overstates the privacy
cost; read that one in CPU time, and instruction counts for before/after of the same work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("get", "session", "chain", "create", "upsert", "evidence", "consent")

# Runs inside the measured tree's own .venv with PYTHONPATH set to it: only names every
# release has (Runtime.open, create_app(runtime=), tokens.issue, audit.flush).
_MEASURE = r'''
import io, json, logging, os, sys, time
from datetime import datetime, timezone
scenario, n, rounds, callgrind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
batch = int(sys.argv[5])
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime
from twin.api.app import create_app
Keyring.generate().save(os.environ["TWIN_KEYRING_PATH"])
devnull = open(os.devnull, "w")
try:  # one handler, as `twin serve` has (basicConfig's beside it wrote every access line twice)
    from twin.logs import configure_logging
    configure_logging("INFO", stream=devnull)
except ImportError:
    logging.basicConfig(level=logging.INFO, stream=devnull, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
runtime = Runtime.open(Config.from_env())
token = runtime.tokens.issue("service", label="bench").token
app = create_app(runtime=runtime)

def call(method, path, body=None):
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(raw), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
               "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
               "HTTP_HOST": "127.0.0.1:8080", "HTTP_AUTHORIZATION": "Bearer " + token, "REMOTE_ADDR": "127.0.0.1"}
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(raw)))
    status = []
    out = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    if not status[0].startswith("2"):
        raise SystemExit(f"{method} {path}: {status[0]} {out[:200]!r}")
    return json.loads(out)

profiles = [call("POST", "/v1/profiles", {"user_id": f"u-{i}", "personal": {"name": "Bench User"},
                                          "learning_goals": ["fractions"], "knowledge_domains": ["math"]})["profile_id"]
            for i in range(50)]

lease = getattr(runtime, "lease", None)  # releases before the lease have none
if lease is not None:
    lease._background = False  # refilled (and its bindings recorded) when empty: deterministic
created = iter(range(10**9))

def one(i):
    pid = profiles[i % len(profiles)]
    if scenario == "create":
        call("POST", "/v1/profiles", {"user_id": f"new-{next(created)}", "personal": {"name": "Bench User"},
                                      "learning_goals": ["fractions"], "knowledge_domains": ["math"]})
    elif scenario in ("get", "chain"):
        call("GET", f"/v1/profiles/{pid}")
    elif scenario == "evidence":  # a batch of 10 new observations, over 2 of the profile's topics
        at, b = datetime.now(timezone.utc).isoformat(), next(created)  # ids never repeated
        call("POST", f"/v1/profiles/{pid}/evidence", {"observations": [
            {"evidence_id": f"ev-{b}-{k}", "domain": "math", "topic": f"topic-{k % 2}", "item_id": f"item-{k}",
             "correct": k % 3 != 0, "observed_at": at} for k in range(10)]})
    elif scenario == "consent":
        call("POST", f"/v1/profiles/{pid}/consents", {"consenter_name": "Bench Parent",
             "consenter_relationship": "parent", "method": "signed_form",
             "obtained_at": datetime.now(timezone.utc).isoformat()})
    elif scenario == "upsert":
        call("PUT", f"/v1/profiles/{pid}/knowledge/math/topic-{i % 50}",
             {"mastery_level": 0.5, "confidence_score": 0.4, "learning_trajectory": {"step": i}})
    else:
        sid = call("POST", f"/v1/profiles/{pid}/sessions", {"session_type": "lesson", "topics_covered": ["a"]})["session_id"]
        call("PATCH", f"/v1/sessions/{sid}", {"end_time": datetime.now(timezone.utc).isoformat(),
                                              "engagement_score": 0.7, "performance_metrics": {"score": 0.9},
                                              "completion_status": "completed"})

threads = int(os.environ.get("BENCH_THREADS", "1"))
if threads > 1:  # requests handed round a pool, one at a time, as a threaded server's are
    import queue, threading
    inboxes, answers, one_here = [queue.Queue() for _ in range(threads)], queue.Queue(), one

    def serve(inbox):
        while (i := inbox.get()) is not None:
            try:
                one_here(i)
                answers.put(None)
            except BaseException as exc:
                answers.put(exc)

    pool = [threading.Thread(target=serve, args=(inbox,), daemon=True) for inbox in inboxes]
    for thread in pool:
        thread.start()

    def one(i):
        inboxes[i % threads].put(i)
        failed = answers.get()
        if failed is not None:
            raise failed

concurrent = int(os.environ.get("BENCH_CONCURRENT", "1"))

def loop():
    if concurrent > 1:  # requests from that many threads at once, as a busy threaded server's
        import threading
        failures = []

        def client(first):
            try:
                for i in range(first, n, concurrent):
                    one(i)
                    if i % 30 == 29:
                        runtime.audit.flush()
            except BaseException as exc:
                failures.append(exc)

        clients = [threading.Thread(target=client, args=(t,)) for t in range(concurrent)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        if failures:
            raise failures[0]
        return
    for i in range(n):
        one(i)
        if i % 30 == 29:
            runtime.audit.flush()

def chain_loop():
    # "chain": only the flushes are measured, each moving a batch of the get route's staged
    # events into the chain; returns (CPU seconds or 0 under callgrind, events chained).
    spent, events = 0.0, 0
    for i in range(n):
        one(i)
        if i % batch == batch - 1:
            if callgrind:
                os.sched_yield()  # a part of its own: the flush
            started = time.process_time()
            events += runtime.audit.flush()
            spent += time.process_time() - started
            if callgrind:
                os.sched_yield()
    return spent, events

# What the wall clock expires stays put through the measured part: under valgrind, and on a
# loaded machine, it runs many times as long as natively, and what a server re-reads once a
# minute among thousands of requests (a subject's key, a token; the journal's recovery look;
# the token-use write) would land in it by chance, a few percent more one run than the next.
for holder, name in ((getattr(runtime, "keys", None), "_remembered"), (runtime.tokens, "_verified")):
    cache = getattr(holder, name, None)
    if cache is not None and hasattr(cache, "_entries"):
        cache._seconds = 1e9
        cache._entries.clear()  # put again by the warm-up, kept
for i in range(100):
    one(i)
runtime.audit.flush()
flusher = getattr(runtime.audit._staging, "_flusher", None)  # chained by the loop instead
if flusher is not None:
    flusher.stop()
if hasattr(runtime.audit._staging, "_next_recovery"):
    runtime.audit._staging._next_recovery = float("inf")  # looked for by the warm-up's flush
if hasattr(runtime.tokens, "_stop"):
    runtime.tokens._stop.set()  # the token-use writer (its uses are written at close)
if scenario == "chain":  # a flush of the measured size first, on this thread's connection (the
    for i in range(batch):  # flusher thread's has its own): its INSERTs are prepared before the loop
        one(i)
    runtime.audit.flush()
if scenario == "chain":
    per_event = []
    for _ in range(1 if callgrind else rounds):
        spent, events = chain_loop()
        per_event.append(spent / events * 1e6)
    print(events if callgrind else min(per_event))
elif callgrind:
    os.sched_yield()  # --dump-before=sched_yield: the loop is a part of its own
    loop()
    os.sched_yield()
else:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        loop()
        times.append(time.process_time() - started)
    print(min(times) / n * 1e6)
if threads > 1:
    for inbox in inboxes:
        inbox.put(None)
runtime.close()
'''


def _instructions(part: str) -> int:
    for line in Path(part).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction total in {part}")


def measure(tree: Path, scenario: str, n: int, rounds: int, callgrind: bool, batch: int = 30,
            plain: bool = False, threads: int = 1, concurrent: int = 1) -> float:
    """Microseconds of CPU (or instructions, with ``callgrind``) per request of ``scenario``
    (for "chain": per event chained, in flushes of ``batch`` get-profile events); ``plain``:
    with SQLCipher and field crypto off; ``threads``: requests handed round that many threads;
    ``concurrent``: requests from that many threads at once."""
    # Its data files, keyring, metrics and callgrind parts: all gone when this returns or fails.
    with tempfile.TemporaryDirectory(prefix="twin-cpu-") as directory:
        return _measure_in(Path(directory), tree, scenario, n, rounds, callgrind, batch, plain,
                           threads, concurrent)


def _measure_in(tmp: Path, tree: Path, scenario: str, n: int, rounds: int, callgrind: bool, batch: int,
                plain: bool, threads: int, concurrent: int) -> float:
    (tmp / "metrics").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_DATA_DIR=str(tmp / "data"), TWIN_KEYRING_PATH=str(tmp / "keyring.json"),
               TWIN_ENV="development", PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"), PYTHONPATH=str(tree),
               PYTHONHASHSEED="0")  # the same set and dict orders in every run
    if plain:
        env["TWIN_BENCH_PLAINTEXT"] = "1"
    env["BENCH_THREADS"], env["BENCH_CONCURRENT"] = str(threads), str(concurrent)
    command = [str(tree / ".venv" / "bin" / "python"), "-c", _MEASURE, scenario, str(n), str(rounds),
               "1" if callgrind else "0", str(batch)]
    if callgrind:
        out = tmp / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--dump-before=sched_yield",
                   f"--callgrind-out-file={out}", *command]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {scenario} failed: {done.stderr[-500:]}")
    if callgrind and scenario != "chain":  # these loops print nothing: the count is in the parts
        return _instructions(f"{out}.2") / n  # part 1: start-up and warm-up; part 2: the loop
    # CPU time per request, or under callgrind the events chained ("chain", at least one
    # flush's: main refuses --n below --batch): a figure the run must have printed
    printed = _printed_figure(tree, scenario, done.stdout)
    if not callgrind:
        return printed
    # parts 2, 4, ...: the flushes; the others are requests
    return sum(_instructions(f"{out}.{2 * k}") for k in range(1, n // batch + 1)) / printed


def _printed_figure(tree: Path, scenario: str, stdout: str) -> float:
    """The number on the measured run's last line of output (exits with one line if none)."""
    lines = stdout.strip().splitlines() or ["(nothing)"]
    try:
        return float(lines[-1])
    except ValueError:
        raise SystemExit(f"{tree}: {scenario} printed no figure (last line: {lines[-1][:80]})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="another checkout (with .venv)")
    parser.add_argument("--n", type=int, default=300, help="requests (session pairs) per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the minimum kept (not with --callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    parser.add_argument("--only", choices=SCENARIOS, nargs="+", default=list(SCENARIOS))
    parser.add_argument("--batch", type=int, default=60,
                        help="chain: get-profile events per flush (what a 50 ms flush delay gathers at ~1200/s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="hand the requests round this many threads, one at a time (a threaded server)")
    parser.add_argument("--concurrent", type=int, default=1,
                        help="send the requests from this many threads at once (a busy threaded server)")
    parser.add_argument("--plain", action="store_true",
                        help="also measure each tree with crypto off and print the privacy cost")
    args = parser.parse_args()
    if "chain" in args.only and args.n < args.batch:  # no flush: nothing chained to divide by
        print(f"request_cpu.py: chain needs --n ({args.n}) of at least --batch ({args.batch})", file=sys.stderr)
        raise SystemExit(2)
    unit = "instructions" if args.callgrind else "us CPU"
    trees = {"this tree": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    print(f"per request ({unit}; a session is its start and finish; chain: per event chained, "
          f"{args.batch} per flush), n={args.n}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for scenario in args.only:
        figures = {name: measure(tree, scenario, args.n, args.rounds, args.callgrind, args.batch,
                                 threads=args.threads, concurrent=args.concurrent)
                   for name, tree in trees.items()}
        line = "  ".join(f"{name} {value:,.0f}" for name, value in figures.items())
        ratio = f"  after/before {figures['this tree'] / figures['before']:.2f}x" if args.before else ""
        print(f"  {scenario:<8} {line}{ratio}")
        if args.plain:
            for name, tree in trees.items():
                plain = measure(tree, scenario, args.n, args.rounds, args.callgrind, args.batch, plain=True,
                                threads=args.threads, concurrent=args.concurrent)
                print(f"  {scenario:<8} {name} plain {plain:,.0f}  privacy/plain {figures[name] / plain:.2f}x "
                      f"(privacy cost {1 - plain / figures[name]:.0%})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
