"""Learner model accuracy and speed, against pyBKT's default model measured in the same run.

Synthetic learners are drawn from known BKT parameters (fixed seed; per skill prior 0.1-0.6,
learn 0.05-0.3, slip 0.05-0.2, guess 0.1-0.3; hidden mastery kept per step) and split by
learner into training and test sets. Printed in one run:

- next-response AUC and RMSE on the test learners: ours (EM fit on the training split, online
  trace) vs pyBKT's default model fitted on the same split, and the true parameters as the
  ceiling any BKT can reach (target: ours >= pyBKT - 0.005);
- mastery tracking: RMSE of P(mastered) against the hidden state, ours vs pyBKT;
- parameter-recovery MAE (target <= 0.05 with 500 learners x 20 observations per skill), from a
  fit on all learners of each skill, and on the training split for both models;
- fit time per skill, ours vs pyBKT;
- online update cost per observation in process (target < 50 µs), in order and late (inserted
  among 100 entries), against pyBKT's batch prediction cost per observation;
- evidence ingest over HTTP (target >= 5,000 observations/s): batches of 100 in-order
  observations from client processes to the real server, privacy on and off
  (``TWIN_BENCH_PLAINTEXT``, the baseline measured in the same run).

pyBKT 1.4.3 needs numpy<2, pandas<2.3 and scikit-learn<1.6, so it lives in its own
benchmark-only environment, bench/.venv-pybkt (git-ignored), which this script creates on first
use as bench/requirements-pybkt.txt describes, and runs in a subprocess that exchanges CSV and
JSON files with this one.

    .venv/bin/python bench/learner_model.py [--skills 10] [--learners 500] [--steps 20]
                                            [--seed 16] [--no-pybkt] [--no-ingest | --only-ingest]
                                            [--ingest-seconds 5] [--ingest-clients 4]
                                            [--ingest-rounds 3] [--before CHECKOUT] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.learner_model import MasteryTrace, Observation, SkillParameters, fit_skill  # noqa: E402
from twin.learner_model.bkt import update  # noqa: E402
from twin.learner_model.synthetic import SyntheticSkill, draw_parameters, simulate  # noqa: E402

PYBKT_VENV = ROOT / "bench" / ".venv-pybkt"
PYBKT_REQUIREMENTS = ROOT / "bench" / "requirements-pybkt.txt"
NAMES = ("prior", "learn", "slip", "guess")
PYBKT_NAMES = {"prior": "prior", "learn": "learns", "slip": "slips", "guess": "guesses"}
T0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
UPDATE_BUDGET_US = 50.0


# -- metrics -------------------------------------------------------------------------------
def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney), ties counted half."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    positive = int(labels.sum())
    negative = len(labels) - positive
    return float((ranks[labels].sum() - positive * (positive + 1) / 2) / (positive * negative))


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth, float) - np.asarray(predicted, float)) ** 2)))


def mae(fitted: dict[str, float], true: SkillParameters) -> float:
    return float(np.mean([abs(fitted[name] - getattr(true, name)) for name in NAMES]))


# -- data ----------------------------------------------------------------------------------
def make_skills(count: int, learners: int, steps: int, seed: int) -> list[SyntheticSkill]:
    rng = np.random.default_rng(seed)
    return [simulate(draw_parameters(rng, f"skill-{k:02d}"), learners, steps, rng)
            for k in range(count)]


def split(learners: int, seed: int, test_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed + 1).permutation(learners)
    cut = int(round(learners * (1 - test_share)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def observations(row: np.ndarray) -> list[Observation]:
    return [Observation(f"e{t}", T0 + timedelta(hours=t), correct=bool(o)) for t, o in enumerate(row)]


def online_predictions(params: SkillParameters,
                       outcomes: np.ndarray) -> tuple[list[float], list[float]]:
    """(P(correct), P(mastered)) before each response, from an online trace per learner."""
    correct, state = [], []
    for row in outcomes:
        trace = MasteryTrace(params)
        for item in observations(row):
            correct.append(trace.predicted_correct())
            state.append(trace.mastery_level)
            trace.observe(item)
    return correct, state


# -- pyBKT in its own environment ----------------------------------------------------------
def pybkt_python() -> Path:
    """bench/.venv-pybkt's interpreter, creating the environment on first use: the packages
    from requirements-pybkt.txt, then pyBKT rebuilt from source for its C++ E-step (PyPI's
    wheel is the slow pure-Python one; without a compiler pyBKT's setup falls back to it)."""
    python = PYBKT_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PYBKT_VENV.relative_to(ROOT)} from {PYBKT_REQUIREMENTS.name} (once)...",
              file=sys.stderr, flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([sys.executable, "-m", "venv", str(PYBKT_VENV)], check=True)
        subprocess.run(pip + ["-r", str(PYBKT_REQUIREMENTS)], check=True)
        subprocess.run(pip + ["--no-deps", "--no-build-isolation", "--force-reinstall",
                              "--no-binary", "pyBKT", "pyBKT==1.4.3"], check=True)
    return python


def write_csv(path: Path, skills: list[SyntheticSkill], learners: np.ndarray) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "order_id", "user_id", "skill_name", "correct"])
        row = 0
        for k, skill in enumerate(skills):
            for learner in learners:
                for t, outcome in enumerate(skill.outcomes[learner]):
                    writer.writerow([row, row, f"u{learner}", f"skill-{k:02d}", int(outcome)])
                    row += 1


def run_pybkt(skills: list[SyntheticSkill], train: np.ndarray, test: np.ndarray) -> dict:
    python = pybkt_python()
    with tempfile.TemporaryDirectory(prefix="twin-bench-bkt-") as tmp:
        folder = Path(tmp)
        write_csv(folder / "train.csv", skills, train)
        write_csv(folder / "test.csv", skills, test)
        runner = ROOT / "bench" / "_pybkt_runner.py"
        files = [str(folder / name) for name in ("train.csv", "test.csv", "out.json")]
        subprocess.run([str(python), str(runner), *files], check=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return json.loads((folder / "out.json").read_text())


# -- speed ---------------------------------------------------------------------------------
def update_cost_us(params: SkillParameters, rng: np.random.Generator,
                   count: int = 20_000) -> dict[str, float]:
    outcomes = (rng.random(count) < 0.6).astype(float)
    items = observations(outcomes)
    start = time.perf_counter()
    p = params.prior
    for o in outcomes:
        p = update(p, o, params)
    raw = (time.perf_counter() - start) / count * 1e6
    traces = [MasteryTrace(params) for _ in range(count // 100)]
    start = time.perf_counter()
    for i, item in enumerate(items):
        traces[i // 100].observe(item)                    # in order, 100 per trace
    in_order = (time.perf_counter() - start) / count * 1e6
    late_items = [Observation(f"late{i}", item.observed_at - timedelta(minutes=30), correct=True)
                  for i, item in enumerate(items)]
    picks = rng.integers(0, 100, size=len(traces))
    start = time.perf_counter()
    for trace, pick in zip(traces, picks):                # one late entry among 100 per trace
        trace.observe(late_items[int(pick)])
    late = (time.perf_counter() - start) / len(traces) * 1e6
    return {"raw": raw, "in_order": in_order, "late": late}


INGEST_TARGET = 5000.0
INGEST_BATCH = 100
INGEST_SKILLS = 5          # topics per batch (20 observations each): a lesson's worth


def _ingest_client(args: tuple) -> int:
    """One client process: POST batches of 100 in-order observations round-robin over its
    profiles for ``seconds``, observed from ``start`` on, 30 s apart; returns observations stored."""
    import http.client

    host, port, token, profiles, seconds, client, start = args
    conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = {pid: 0 for pid in profiles}
    stored, turn = 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pid = profiles[turn % len(profiles)]
        turn += 1
        first = sent[pid]
        batch = [{"evidence_id": f"c{client}-{first + i}", "domain": "math",
                  "topic": f"topic-{i % INGEST_SKILLS}", "item_id": f"item-{(first + i) % 997}",
                  "correct": (first + i) % 3 != 0,
                  "observed_at": (start + timedelta(seconds=30 * (first + i))).isoformat()}
                 for i in range(INGEST_BATCH)]
        sent[pid] = first + INGEST_BATCH
        conn.request("POST", f"/v1/profiles/{pid}/evidence", body=json.dumps({"observations": batch}),
                     headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"evidence POST -> {response.status} {body[:200]!r}")
        stored += json.loads(body)["new"]
    conn.close()
    return stored


def _ingest_profiles(base: str, token: str, count: int) -> list[str]:
    import http.client
    import uuid

    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    ids = []
    for _ in range(count):
        conn.request("POST", "/v1/profiles", body=json.dumps({"user_id": f"bench-{uuid.uuid4()}"}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        ids.append(json.loads(conn.getresponse().read())["profile_id"])
    conn.close()
    return ids


def ingest_over_http(seconds: float = 5.0, clients: int = 4, rounds: int = 3, threads: int = 8,
                     before: Path | None = None) -> dict[str, float]:
    """Evidence ingest over HTTP on the real server, observations/s in batches of 100 (in time
    order per learner, 5 topics a batch), privacy on, and off (TWIN_BENCH_PLAINTEXT: no
    SQLCipher, no field encryption) as the baseline measured in the same run, and with privacy
    on from the ``before`` checkout if given (its own code, served as bench/revisions.py does);
    rounds rotate the order of the servers so background load hits them alike. Medians of the
    rounds."""
    import multiprocessing as mp
    import statistics
    from contextlib import ExitStack

    sys.path.insert(1, str(ROOT / "bench"))
    from _server import running_server

    modes = ("privacy", "plain") + (("before",) if before is not None else ())
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    with ExitStack() as servers:
        priv_base, priv_token, _ = servers.enter_context(running_server(threads=threads))
        plain_base, plain_token, _ = servers.enter_context(running_server(plaintext=True, threads=threads))
        targets = {"privacy": (priv_base, priv_token), "plain": (plain_base, plain_token)}
        if before is not None:
            from revisions import running_checkout
            targets["before"] = servers.enter_context(running_checkout(before, threads))
        profiles = {mode: _ingest_profiles(base, token, 10 * clients) for mode, (base, token) in targets.items()}
        # Each round continues every profile's timeline after the previous round's (690 days
        # shared out, within the 730-day evidence retention): a round restarting it would send
        # observations among the stored ones, late ones that rebuild their skill from its rows.
        epoch, span = datetime.now(timezone.utc) - timedelta(days=700), timedelta(days=690) / rounds
        for round_no in range(rounds):
            shift = round_no % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                base, token = targets[mode]
                host, port = base.removeprefix("http://").split(":")
                mine = profiles[mode]
                jobs = [(host, int(port), token, mine[c::clients], seconds, f"{round_no}-{c}",
                         epoch + round_no * span) for c in range(clients)]
                with mp.get_context("spawn").Pool(clients) as pool:
                    stored = sum(pool.map(_ingest_client, jobs))
                runs[mode].append(stored / seconds)
    return {mode: statistics.median(values) for mode, values in runs.items()}


# -- report --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skills", type=int, default=10)
    parser.add_argument("--learners", type=int, default=500, help="per skill, before the split")
    parser.add_argument("--steps", type=int, default=20, help="observations per learner and skill")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-pybkt", action="store_true", help="skip the pyBKT baseline")
    parser.add_argument("--no-ingest", action="store_true", help="skip the HTTP ingest benchmark")
    parser.add_argument("--only-ingest", action="store_true", help="run only the HTTP ingest benchmark")
    parser.add_argument("--ingest-seconds", type=float, default=5.0, help="per round and mode")
    parser.add_argument("--ingest-clients", type=int, default=4, help="client processes")
    parser.add_argument("--ingest-rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout (with .venv) whose ingest, privacy on, is measured "
                             "in the same rounds: the after/before ratio of a change")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 skills x 200 learners, ingest 2 s x 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.skills, args.learners, args.ingest_seconds, args.ingest_rounds = 3, 200, 2.0, 3
    if args.only_ingest:
        report_ingest(args)
        return
    skills = make_skills(args.skills, args.learners, args.steps, args.seed)
    train, test = split(args.learners, args.seed)
    print(f"{args.skills} skills x {args.learners} learners x {args.steps} observations "
          f"(seed {args.seed}); split by learner: {len(train)} train / {len(test)} test")

    full_mae, fit_seconds, ours_fits = [], [], []
    for skill in skills:
        full_mae.append(mae(fit_skill(list(skill.outcomes)).parameters.values(), skill.parameters))
        start = time.perf_counter()
        ours_fits.append(fit_skill(list(skill.outcomes[train])).parameters)
        fit_seconds.append(time.perf_counter() - start)

    y, mastered, ours_p, ours_s, true_p, true_s = [], [], [], [], [], []
    for skill, params in zip(skills, ours_fits):
        correct, state = online_predictions(params, skill.outcomes[test])
        ours_p += correct
        ours_s += state
        correct, state = online_predictions(skill.parameters, skill.outcomes[test])
        true_p += correct
        true_s += state
        y += list(skill.outcomes[test].ravel())
        mastered += list(skill.mastered[test].ravel().astype(float))

    rows = [("ours (EM + online trace)", auc(y, ours_p), rmse(y, ours_p), rmse(mastered, ours_s),
             float(np.mean([mae(p.values(), s.parameters) for p, s in zip(ours_fits, skills)])))]
    pybkt = None if args.no_pybkt else run_pybkt(skills, train, test)
    if pybkt is not None:
        pb_p, pb_s = pybkt["correct_predictions"], pybkt["state_predictions"]
        fitted = [{n: pybkt["params"][f"skill-{k:02d}"][PYBKT_NAMES[n]] for n in NAMES}
                  for k in range(len(skills))]
        pb_mae = float(np.mean([mae(f, s.parameters) for f, s in zip(fitted, skills)]))
        flavour = "C++" if pybkt["compiled"] else "pure Python"
        rows.append((f"pyBKT 1.4.3 default ({flavour})", auc(y, pb_p), rmse(y, pb_p),
                     rmse(mastered, pb_s), pb_mae))
    rows.append(("true parameters (ceiling)", auc(y, true_p), rmse(y, true_p),
                 rmse(mastered, true_s), 0.0))

    print(f"\nnext response on {len(y)} test observations")
    print(f"  {'model':28} {'AUC':>7} {'RMSE':>7} {'mastery RMSE':>13} {'param MAE (train)':>18}")
    for name, a, r, m, e in rows:
        print(f"  {name:28} {a:7.4f} {r:7.4f} {m:13.4f} {e:18.4f}")
    if pybkt is not None:
        delta = rows[0][1] - rows[1][1]
        verdict = "met" if delta >= -0.005 else "MISSED"
        print(f"  AUC ours - pyBKT = {delta:+.4f} (target >= -0.005: {verdict})")

    worst = max(full_mae)
    print(f"\nparameter recovery, fit on all {args.learners} learners x {args.steps} "
          "observations per skill")
    print(f"  MAE mean {np.mean(full_mae):.4f}, worst skill {worst:.4f} "
          f"(target <= 0.05: {'met' if np.mean(full_mae) <= 0.05 else 'MISSED'})")
    ours_fit = float(np.mean(fit_seconds))
    line = f"\nfit per skill ({len(train)} learners): ours {ours_fit * 1e3:.0f} ms"
    if pybkt is not None:
        pb_fit = pybkt["fit_seconds"] / len(skills)
        line += f", pyBKT {pb_fit * 1e3:.0f} ms (ratio pyBKT/ours {pb_fit / ours_fit:.1f}x)"
    print(line)

    cost = update_cost_us(ours_fits[0], np.random.default_rng(args.seed))
    print("\nonline update per observation, in process")
    print(f"  BKT arithmetic alone   {cost['raw']:7.2f} µs")
    share = cost["in_order"] / UPDATE_BUDGET_US
    print(f"  trace, in order        {cost['in_order']:7.2f} µs  ({share:.0%} of the "
          f"{UPDATE_BUDGET_US:.0f} µs budget)")
    print(f"  trace, late observation {cost['late']:6.2f} µs  (one among 100 held: recomputes the ~50 "
          "after its insertion point)")
    if pybkt is not None:
        per_obs = pybkt["predict_seconds"] / len(y) * 1e6
        print(f"  pyBKT batch predict    {per_obs:7.2f} µs  (baseline: ratio to ours in order "
              f"{per_obs / cost['in_order']:.1f}x)")

    if not args.no_ingest:
        report_ingest(args)


def report_ingest(args: argparse.Namespace) -> None:
    ingest = ingest_over_http(args.ingest_seconds, args.ingest_clients, args.ingest_rounds,
                              before=args.before.resolve() if args.before else None)
    privacy, plain = ingest["privacy"], ingest["plain"]
    print(f"\nevidence ingest over HTTP, batches of {INGEST_BATCH} ({args.ingest_clients} client "
          f"processes, {args.ingest_rounds} interleaved rounds x {args.ingest_seconds:.0f}s, medians)")
    print(f"  privacy on   {privacy:9,.0f} observations/s  (target >= {INGEST_TARGET:,.0f}: "
          f"{'met' if privacy >= INGEST_TARGET else 'MISSED'})")
    print(f"  privacy off  {plain:9,.0f} observations/s  (baseline; privacy/plain {privacy / plain:.2f}x)")
    if "before" in ingest:
        print(f"  before       {ingest['before']:9,.0f} observations/s  (privacy on, {args.before}; "
              f"after/before {privacy / ingest['before']:.2f}x)")


if __name__ == "__main__":
    main()
