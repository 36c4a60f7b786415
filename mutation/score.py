"""Mutation scores of the privacy core, one module at a time (``scripts/mutation``).

For each module named in ``modules.toml`` (or given on the command line) this builds a
workspace under ``.mutation/<module>/`` (a copy of compliance/, twin/ and tests/, and a setup.cfg
whose ``[mutmut]`` section mutates that module only and selects its tests), runs
``mutmut run`` there, and scores the result: killed and timed-out mutants count as caught,
and a survivor counts as caught only when ``equivalent.toml`` lists it with why. Survivors
are printed with their diff, and the whole report goes to ``.mutation/report.md``.

Exit status: 0 when every module scored reaches the target, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")

CAUGHT = {1, 3, 36, 24, -24, 152, 255}   # killed (1, 3: pytest failed) or timed out
NOT_CHECKED = {None, 2}


@dataclass
class Equivalent:
    module: str
    before: str
    after: str
    why: str

    def matches(self, module: str, diff: "Diff") -> bool:
        return module == self.module and diff.before == self.before.strip() and diff.after == self.after.strip()


@dataclass
class Diff:
    before: str
    after: str
    text: str


@dataclass
class Score:
    module: str
    mutants: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[tuple[str, Diff]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def percent(self) -> float:
        return 100.0 * (self.killed + self.equivalent) / self.mutants if self.mutants else 100.0


# The project writes SQL keywords in capitals (and messages in lower case): a string holding one
# is SQL text.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|SET|LIMIT|ORDER BY|JOIN|ON|AND|OR|IS NULL|NULL)\b")
_ROW_KEY = re.compile(r"\b(row|r|rows\[-?\d+\])\[(\"\w+\"|'\w+')\]")
# A WHERE condition on its own, as the code assembles them: "l.seq > ?".
_SQL_CONDITION = re.compile(r"[\"'][\w.]+ (=|<|>|<=|>=|!=) \?[\"']")


_STRING = re.compile(r"\"[^\"]*\"|'[^']*'")


def sql_letter_case(diff: Diff) -> bool:
    """Only the letter case of SQL text changed: every string literal that differs is SQL."""
    before, after = _STRING.findall(diff.before), _STRING.findall(diff.after)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    return len(before) == len(after) and bool(changed) \
        and _STRING.sub("", diff.before) == _STRING.sub("", diff.after) \
        and all(b.lower() == a.lower() and (_SQL.search(b) or _SQL_CONDITION.fullmatch(b)) for b, a in changed)


def row_key_letter_case(diff: Diff) -> bool:
    """Only the letter case of a column name looked up in a result row changed."""
    def lowered(text: str) -> str:
        return _ROW_KEY.sub(lambda m: m.group(0).lower(), text)
    return diff.before != diff.after and lowered(diff.before) == lowered(diff.after)


_CODECS = {'"ascii"', '"utf-8"'}
_DEFAULT_UTF8 = re.compile(r"\.(en|de)code\(\"utf-8\", ")


def codec_name(diff: Diff) -> bool:
    """Only a codec's name changed letter case ("utf-8" -> "UTF-8"), or an explicit "utf-8"
    before other arguments was dropped from str.encode/bytes.decode (their default)."""
    before, after = _STRING.findall(diff.before), _STRING.findall(diff.after)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    recased = len(before) == len(after) and bool(changed) \
        and _STRING.sub("", diff.before) == _STRING.sub("", diff.after) \
        and all(b.lower() == a.lower() and b.lower() in _CODECS for b, a in changed)
    return recased or (bool(_DEFAULT_UTF8.search(diff.before))
                       and _DEFAULT_UTF8.sub(lambda m: f".{m.group(1)}code(", diff.before) == diff.after)


RULES = {"sql-letter-case": sql_letter_case, "row-key-letter-case": row_key_letter_case,
         "codec-name": codec_name}


def load_config() -> tuple[dict, list[Equivalent | Rule]]:
    config = tomllib.loads((HERE / "modules.toml").read_text())
    listed = tomllib.loads((HERE / "equivalent.toml").read_text())
    equivalents: list[Equivalent | Rule] = [Equivalent(e["module"], e["before"], e["after"], e["why"])
                                     for e in listed.get("equivalent", [])]
    for rule in listed.get("rule", []):
        if rule["name"] not in RULES:
            raise SystemExit(f"equivalent.toml: unknown rule {rule['name']!r} (known: {', '.join(RULES)})")
        equivalents.append(Rule(rule["name"], rule["why"]))
    missing_why = [e for e in equivalents if not e.why.strip()]
    if missing_why:
        raise SystemExit(f"equivalent.toml: every entry needs a why ({missing_why[0]!r})")
    return config, equivalents


@dataclass
class Rule:
    """A kind of mutant that is equivalent wherever it appears (see ``RULES``)."""

    name: str
    why: str

    def matches(self, module: str, diff: Diff) -> bool:
        return RULES[self.name](diff)


def workspace(module: str, tests: list[str], pytest_args: list[str]) -> Path:
    """A fresh copy of the code and tests, configured to mutate ``module`` only."""
    ws = WORK / Path(module).stem
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    copy_code(ws)
    write_config(ws, module, tests, pytest_args)
    return ws


def copy_code(ws: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("compliance", "twin", "tests"):
        shutil.copytree(ROOT / package, ws / package, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", ws / "pyproject.toml")


def write_config(ws: Path, module: str, tests: list[str], pytest_args: list[str]) -> None:
    (ws / "setup.cfg").write_text((ROOT / "setup.cfg").read_text() + mutmut_section(module, tests, pytest_args))


def mutmut_section(module: str, tests: list[str], pytest_args: list[str]) -> str:
    def lines(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    return f"""
[mutmut]
source_paths = compliance/
only_mutate = {module}
also_copy = twin/
pytest_add_cli_args_test_selection ={lines(tests)}
pytest_add_cli_args ={lines(pytest_args)}
"""


def refreshed_workspace(module: str, tests: list[str], pytest_args: list[str]) -> Path:
    """The last run's workspace with today's tests and configuration, for re-running its
    uncaught mutants. Refused when the module itself changed since (its mutants would differ)."""
    ws = WORK / Path(module).stem
    if not (ws / module).exists():
        raise SystemExit(f"{module}: no earlier run to re-run the survivors of; run it in full first")
    if (ws / module).read_bytes() != (ROOT / module).read_bytes():
        raise SystemExit(f"{module} changed since its last run: run it in full again")
    if not (ws / "setup.cfg").read_text().endswith(mutmut_section(module, tests, pytest_args)):
        # mutmut would forget every result and run the module in full, scoring nothing better
        raise SystemExit(f"{module}: its tests or pytest_args changed since its last run: run it in full again")
    copy_code(ws)
    write_config(ws, module, tests, pytest_args)
    return ws


def diffs_of(ws: Path, module: str, mutants: list[str]) -> dict[str, Diff]:
    """Each mutant's changed lines, from mutmut's mutants file (parsed once)."""
    import os
    from difflib import unified_diff

    import libcst as cst
    from mutmut.mutation.diff_apply import (read_mutant_function, read_mutants_module,
                                            read_original_function)

    here = os.getcwd()
    os.chdir(ws)
    try:
        parsed = read_mutants_module(Path(module))
        diffs = {}
        for mutant in mutants:
            original, mutated = (cst.Module([f]).code.strip().split("\n") for f in
                                 (read_original_function(parsed, mutant), read_mutant_function(parsed, mutant)))
            changed = [line for line in unified_diff(original, mutated, lineterm="")
                       if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            diffs[mutant] = Diff("\n".join(line[1:].strip() for line in changed if line.startswith("-")),
                                 "\n".join(line[1:].strip() for line in changed if line.startswith("+")),
                                 "\n".join(changed))
        return diffs
    finally:
        os.chdir(here)


def score_module(module: str, tests: list[str], pytest_args: list[str], equivalents: list[Equivalent | Rule],
                 max_children: int, rerun: bool | str = True) -> Score:
    started = time.monotonic()
    ws, returncode = WORK / Path(module).stem, 0
    meta = ws / "mutants" / (module + ".meta")
    if rerun == "survivors":
        ws = refreshed_workspace(module, tests, pytest_args)
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        uncaught = [m for m, code in codes.items() if code not in CAUGHT]
        # A survivor equivalent.toml lists stays scored as one: re-running it would only spend
        # its tests' time (minutes each for one reached by the PostgreSQL tests).
        survived = diffs_of(ws, module, [m for m in uncaught if codes[m] not in NOT_CHECKED])
        uncaught = [m for m in uncaught if m not in survived
                    or not any(e.matches(module, survived[m]) for e in equivalents)]
        if uncaught:
            with (ws / "mutmut.log").open("a") as out:
                returncode = subprocess.run([str(MUTMUT), "run", "--max-children", str(max_children), *uncaught],
                                            cwd=ws, stdout=out, stderr=subprocess.STDOUT).returncode
    elif rerun:
        ws = workspace(module, tests, pytest_args)
        with (ws / "mutmut.log").open("w") as out:
            returncode = subprocess.run([str(MUTMUT), "run", "--max-children", str(max_children)], cwd=ws,
                                        stdout=out, stderr=subprocess.STDOUT).returncode
    if returncode != 0 and meta.exists() and not json.loads(meta.read_text())["hash_by_function_name"]:
        returncode = 0  # no function to mutate (a module of constants, e.g. a migration's SQL): 0 mutants
    if returncode != 0 or not meta.exists():
        raise SystemExit(f"{module}: mutmut run failed (exit {returncode}); see {ws / 'mutmut.log'}")
    exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
    score = Score(module, mutants=len(exit_codes))
    diffs = diffs_of(ws, module, [m for m, code in exit_codes.items() if code not in CAUGHT])
    for mutant, code in sorted(exit_codes.items()):
        if code in CAUGHT:
            score.killed += 1
            continue
        diff = diffs[mutant]
        if code not in NOT_CHECKED and any(e.matches(module, diff) for e in equivalents):
            score.equivalent += 1
        else:
            status = "survived" if code == 0 else "no tests" if code in (5, 33) else f"exit {code}"
            score.survivors.append((f"{mutant} ({status})", diff))
    score.seconds = time.monotonic() - started
    return score


def report(scores: list[Score], target: float) -> str:
    out = ["| module | mutants | killed | equivalent | score | time |", "|---|---|---|---|---|---|"]
    for s in scores:
        mark = "" if s.percent >= target else " (below target)"
        out.append(f"| `{s.module}` | {s.mutants} | {s.killed} | {s.equivalent} | "
                   f"{s.percent:.1f}%{mark} | {s.seconds / 60:.1f} min |")
    for s in scores:
        for name, diff in s.survivors:
            out += ["", f"survivor {name}:", "```diff", diff.text, "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. compliance/dsr.py (default: every module listed)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the last run's results again (after editing equivalent.toml)")
    parser.add_argument("--survivors", action="store_true",
                        help="re-run only the last run's uncaught mutants (those it never reached, "
                             "too: it resumes a stopped run) but the survivors equivalent.toml lists, "
                             "against today's tests (after adding tests; the module itself and its "
                             "test list must be unchanged)")
    args = parser.parse_args(argv)
    config, equivalents = load_config()
    modules = config["modules"]
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        print(f"error: {unknown[0]} is not in mutation/modules.toml", file=sys.stderr)
        return 2
    target = float(config["target_percent"])
    scores = []
    for module in args.modules or list(modules):  # one at a time: each run uses every core
        pytest_args = modules[module].get("pytest_args", config["pytest_args"])
        scores.append(score_module(module, modules[module]["tests"], pytest_args, equivalents,
                                   args.max_children,
                                   rerun="survivors" if args.survivors else not args.rescore))
        s = scores[-1]
        print(f"{module}: {s.mutants} mutants, {s.killed} killed, {s.equivalent} equivalent, "
              f"{s.percent:.1f}% in {s.seconds / 60:.1f} min", flush=True)
    text = report(scores, target)
    (WORK / "report.md").write_text(text)
    print(text)
    return 0 if all(s.percent >= target for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
