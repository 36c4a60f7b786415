"""The API benchmark before and after a change, in one sitting with interleaved rounds.

Serves the same scenarios as bench/api.py from two checkouts at once: "before" (another
checkout with its own .venv, e.g. the release a refactoring started from) and "after" (this
tree, one worker like a release without workers, so the comparison is of the code, not of the
process model). Within each round every scenario runs against both servers, the order
alternating between rounds, so background noise hits both alike. Prints requests/s and p50/p99
medians and after/before ratios (min / median / max over the rounds); the structure issue's
target is every median within 10% of before.

    git worktree add ../before b8c13d3 && (cd ../before && scripts/test --co -q)  # its .venv
    .venv/bin/python bench/revisions.py --before ../before [--after ../after] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from _server import _process, running_server
from api import SCENARIOS, measure, seed

# Issues a service token with the before tree's own code (its Runtime and token store).
_ISSUE_TOKEN = """
import sys
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime
Keyring.generate().save(sys.argv[1])
runtime = Runtime.open(Config.from_env())
print(runtime.tokens.issue("service", label="bench").token)
runtime.close()
"""


@contextmanager
def running_checkout(tree: Path, threads: int) -> Iterator[tuple[str, str]]:
    """(base_url, token) of ``tree``'s own ``twin serve`` on a fresh data directory."""
    tmp = Path(tempfile.mkdtemp(prefix="twin-before-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    env.update(TWIN_DATA_DIR=str(tmp / "data"), TWIN_KEYRING_PATH=str(tmp / "keyring.json"),
               TWIN_ENV="development", PYTHONPATH=str(tree))
    python = str(tree / ".venv" / "bin" / "python")
    token = subprocess.run([python, "-c", _ISSUE_TOKEN, env["TWIN_KEYRING_PATH"]], env=env, cwd=tree,
                           capture_output=True, text=True, check=True).stdout.strip()
    command = [str(tree / ".venv" / "bin" / "twin"), "serve", "--host", "127.0.0.1", "--port", "{port}",
               "--threads", str(threads)]
    with _process(command, env, tmp / "server.log") as base:
        yield base, token


@contextmanager
def _this_tree(threads: int) -> Iterator[tuple[str, str]]:
    with running_server(threads=threads, workers=1) as (base, token, _):
        yield base, token


def _spread(after: list[dict], before: list[dict]) -> tuple[float, float, float]:
    values = [a["rps"] / b["rps"] for a, b in zip(after, before)]
    return min(values), statistics.median(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (with .venv)")
    parser.add_argument("--after", type=Path, default=None,
                        help="a checkout (with .venv) to serve as 'after' instead of this tree")
    parser.add_argument("--seconds", type=float, default=3.0, help="per scenario, per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="server threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per scenario, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    tree = args.before.resolve()
    other = args.after.resolve() if args.after else None
    for checkout in filter(None, (tree, other)):
        if not (checkout / ".venv" / "bin" / "twin").exists():
            parser.error(f"{checkout}: no .venv/bin/twin (run its scripts/test --co -q once)")
    after_server = (running_checkout(other, args.threads) if other
                    else _this_tree(args.threads))
    sides = ("before", "after")
    runs: dict[str, dict[str, list[dict]]] = {side: {s: [] for s in SCENARIOS} for side in sides}
    with running_checkout(tree, args.threads) as (before_base, before_token), \
            after_server as (after_base, after_token):
        targets = {"before": (before_base, before_token), "after": (after_base, after_token)}
        targets_seeded = {side: (b, t, seed(b, t)) for side, (b, t) in targets.items()}
        for round_no in range(args.rounds):
            for s in SCENARIOS:
                for side in (sides if round_no % 2 == 0 else sides[::-1]):
                    base, token, profiles = targets_seeded[side]
                    runs[side][s].append(measure(base, token, s, args.seconds, args.clients, profiles))
    print(f"\nbefore: {tree}; after: {other or 'this tree (1 worker)'}; {args.clients} client processes, "
          f"{args.rounds} interleaved rounds x {args.seconds:g}s per scenario and server\n")
    print(f"{'scenario':<22}" + "".join(f"{side + ' rps':>12}{'p50':>7}{'p99':>7}" for side in sides)
          + "   after/before min / median / max")
    for s in SCENARIOS:
        cells = ""
        for side in sides:
            med = {k: statistics.median(r[k] for r in runs[side][s]) for k in ("rps", "p50_ms", "p99_ms")}
            cells += f"{med['rps']:>12.0f}{med['p50_ms']:>7.1f}{med['p99_ms']:>7.1f}"
        low, mid, high = _spread(runs["after"][s], runs["before"][s])
        verdict = "within 10%" if mid >= 0.9 else "SLOWER by more than 10%"
        print(f"{s:<22}{cells}   {low:.2f}x {mid:.2f}x {high:.2f}x  {verdict}")


if __name__ == "__main__":
    main()
