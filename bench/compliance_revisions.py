"""``bench/compliance.py --before DIR``: the compliance measures before and after a change, in one
sitting with interleaved rounds, as ``bench/revisions.py`` does for the API.

Each side runs ``bench/compliance_side.py`` in its own checkout's venv (``DIR/.venv``, the
checkout on ``PYTHONPATH``), kept running for the whole comparison; "after" is this tree (or
``--after DIR``). Both sides seed the same data, then every round measures one side and then the
other, the order alternating between rounds, so background noise hits both alike. Only measures
both trees have are compared: DSR export and erase of one subject per size, and the retention
purge (rows/s, in process); the erase and the purge also in the process's CPU time. Prints each side's min/median/max and the after/before ratio of the
medians; the structure issue's target is every median within 10% of before.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIDE = Path(__file__).resolve().parent / "compliance_side.py"
# Lower is better for times, higher for throughput: the verdict is read the right way round.
HIGHER_IS_BETTER = {"purge_rows_per_s", "purge_cpu_rows_per_s"}
SHOWN = ("export_s", "erase_s", "erase_cpu_s", "purge_rows_per_s", "purge_cpu_rows_per_s")


class Side:
    """A ``compliance_side.py`` process of one checkout."""

    def __init__(self, label: str, tree: Path, python: str) -> None:
        self.label, self.tree = label, tree
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env["PYTHONPATH"] = str(tree)
        # -P: not this file's directory first on sys.path (bench/compliance.py would shadow the
        # package ``compliance``).
        self.proc = subprocess.Popen([python, "-P", str(SIDE)], cwd=tree, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, op: str, **args: Any) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label} ({self.tree}) stopped during {op}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.label} ({self.tree}) {op}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (RuntimeError, OSError, ValueError):
                pass
            self.proc.wait(timeout=120)


def _python_of(tree: Path) -> str:
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{tree}: no .venv/bin/python (run its scripts/test --co -q once)")
    return str(python)


def _interleaved(sides: list[Side], rounds: int, op: str, **args: Any) -> dict[str, dict[str, list[float]]]:
    """``op`` for each round on both sides, the order alternating: measure -> side -> values."""
    results: dict[str, dict[str, list[float]]] = {}
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            for measure, value in side.ask(op, round=r, **args).items():
                results.setdefault(measure, {}).setdefault(side.label, []).append(value)
    return results


def _spread(values: list[float], scale: float) -> str:
    values = sorted(v * scale for v in values)
    return "/".join(f"{v:,.0f}" for v in (values[0], statistics.median(values), values[-1]))


def _print(title: str, results: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{title}")
    for measure in SHOWN:
        if measure not in results:
            continue
        before, after = results[measure]["before"], results[measure]["after"]
        scale, unit = (1.0, "rows/s") if measure in HIGHER_IS_BETTER else (1000.0, "ms")
        ratio = statistics.median(after) / statistics.median(before)
        worse = ratio < 0.9 if measure in HIGHER_IS_BETTER else ratio > 1.1
        print(f"  {measure:<20} before {_spread(before, scale):>22} {unit:<6}  after {_spread(after, scale):>22} "
              f"{unit:<6}  after/before {ratio:5.2f}  {'WORSE by more than 10%' if worse else 'within 10%'}")


def main(args: Any) -> None:
    before_tree = args.before.resolve()
    after_tree = args.after.resolve() if args.after else ROOT
    after_python = _python_of(after_tree) if args.after else sys.executable
    sizes = [int(n) for n in args.sizes.split(",")]
    print(f"before: {before_tree}; after: {after_tree}; {args.rounds} interleaved rounds, min/median/max")
    sides = [Side("before", before_tree, _python_of(before_tree)), Side("after", after_tree, after_python)]
    try:
        if args.only in (None, "dsr"):
            for sessions in sizes:
                print(f"  seeding {args.rounds} subjects of {sessions:,} sessions on both sides ...", flush=True)
                for side in sides:
                    side.ask("dsr_setup", sessions=sessions, rounds=args.rounds)
                _print(f"DSR of one subject with {sessions:,} sessions and 100 knowledge states "
                       f"(20 other subjects present)", _interleaved(sides, args.rounds, "dsr_round"))
        if args.only in (None, "purge"):
            print(f"  seeding and purging {args.purge_rows:,} expired sessions per round on both sides ...",
                  flush=True)
            _print(f"Retention purge of {args.purge_rows:,} expired session rows (in process, no reads meanwhile)",
                   _interleaved(sides, args.rounds, "purge_round", rows=args.purge_rows))
    finally:
        for side in sides:
            side.close()
