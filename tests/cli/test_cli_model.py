"""``twin model fit|recompute|parameters``: known parameters recovered from synthetic learners
through the command, the estimates recomputed, and the parameters listed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from click.testing import CliRunner

from cli_support import operator_env
from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.cli import cli
from twin.config import Config
from twin.learner_model.synthetic import draw_parameters, simulate
from twin.runtime import Runtime

pytestmark = pytest.mark.slow

SERVICE = Actor("tok_test_service", "service")
LEARNERS, STEPS = 200, 20


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two skills with parameters drawn from the benchmark's ranges, 200 learners answering 20
    items on each, stored through the evidence service; (env, true parameters by topic)."""
    tmp_path = tmp_path_factory.mktemp("model")
    env = operator_env(tmp_path)
    Keyring.generate().save(tmp_path / "keys" / "keyring.json")
    rng = np.random.default_rng(16)
    truth = {topic: draw_parameters(rng, topic) for topic in ("algebra", "geometry")}
    answers = {topic: simulate(params, LEARNERS, STEPS, rng).outcomes for topic, params in truth.items()}
    start = datetime.now(timezone.utc) - timedelta(days=3)
    runtime = Runtime.open(Config.from_env(env))
    try:
        for n in range(LEARNERS):
            pid = runtime.profiles.create(SERVICE, None, {"user_id": f"synthetic-{n}"})[0]["profile_id"]
            runtime.evidence.ingest(SERVICE, None, pid, [
                {"evidence_id": f"{topic}-{i}", "domain": "math", "topic": topic, "item_id": f"{topic}-q{i}",
                 "correct": bool(o), "observed_at": start + timedelta(minutes=i)}
                for topic, rows in answers.items() for i, o in enumerate(rows[n])])
    finally:
        runtime.close()
    return env, truth


def test_fit_recovers_the_parameters_the_learners_were_drawn_from(synthetic):
    env, truth = synthetic

    run = CliRunner().invoke(cli, ["model", "fit"], env=env)

    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert (report["skills"], report["fitted"], report["learners"]) == (2, 2, LEARNERS)
    assert report["observations"] == 2 * LEARNERS * STEPS
    assert report["recomputed"] == {"states": 2 * LEARNERS, "skills": 2, "learners": LEARNERS}
    runtime = Runtime.open(Config.from_env(env))
    try:
        fitted = {row["topic"]: row for row in runtime.skill_parameters.all_current()}
        for topic, true in truth.items():
            error = np.mean([abs(fitted[topic][name] - getattr(true, name))
                             for name in ("prior", "learn", "slip", "guess")])
            assert error <= 0.05, (topic, fitted[topic], true)
        states = runtime.twin_db.query("SELECT topic, parameters_version FROM knowledge_states")
        assert {(s["topic"], s["parameters_version"]) for s in states} == \
            {(topic, fitted[topic]["version"]) for topic in truth}
    finally:
        runtime.close()

    listed = CliRunner().invoke(cli, ["model", "parameters"], env=env)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0].startswith("defaults default-1: prior 0.3")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["math/algebra", "math/geometry"]
    as_json = json.loads(CliRunner().invoke(cli, ["model", "parameters", "--json"], env=env).stdout)
    assert {s["version"] for s in as_json["skills"]} == {fitted[t]["version"] for t in truth}
    again = CliRunner().invoke(cli, ["model", "recompute"], env=env)
    assert again.exit_code == 0 and json.loads(again.stdout)["states"] == 0


def test_one_skill_and_bad_options(synthetic):
    env, _ = synthetic

    one = CliRunner().invoke(cli, ["model", "fit", "--skill", "math/algebra", "--no-recompute"], env=env)
    bad = CliRunner().invoke(cli, ["model", "fit", "--skill", "algebra"], env=env)

    assert one.exit_code == 0 and json.loads(one.stdout)["skills"] == 1
    assert "recomputed" not in json.loads(one.stdout)
    assert bad.exit_code == 2 and "DOMAIN/TOPIC" in bad.stderr and "Traceback" not in bad.output
