"""Skill parameters fitted from every learner's evidence, adopted, and the estimates recomputed:
through the services, on real files."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from compliance.audit import Actor
from twin.learner_model import SkillParameters
from twin.learner_model.synthetic import simulate

SERVICE = Actor("tok_test_service", "service")
OPERATOR = Actor("script:test", "operator")
TRUE = SkillParameters(prior=0.35, learn=0.2, slip=0.08, guess=0.22, version="truth")


def learners(runtime, clock, count: int, steps: int, *, seed: int = 4, topic: str = "algebra",
             prefix: str = "fit") -> list[str]:
    """``count`` learners answering ``steps`` items drawn from TRUE, through the evidence service."""
    skill = simulate(TRUE, count, steps, np.random.default_rng(seed))
    start = clock() - timedelta(days=5)
    pids = []
    for n, outcomes in enumerate(skill.outcomes):
        pid = runtime.profiles.create(SERVICE, None, {"user_id": f"{prefix}-{topic}-{n}"})[0]["profile_id"]
        runtime.evidence.ingest(SERVICE, None, pid, [
            {"evidence_id": f"{topic}-{i}", "domain": "math", "topic": topic, "item_id": f"q{i}",
             "correct": bool(o), "observed_at": start + timedelta(minutes=i)} for i, o in enumerate(outcomes)])
        pids.append(pid)
    return pids


def versions(runtime) -> set[str]:
    return {r["parameters_version"] for r in runtime.twin_db.query("SELECT parameters_version FROM knowledge_states")}


def test_too_little_evidence_keeps_the_documented_defaults(runtime, clock):
    learners(runtime, clock, 10, 20)

    report = runtime.model_fitting.fit(OPERATOR)

    assert (report.skills, report.fitted, report.changed, report.learners) == (1, 0, 0, 10)
    assert "below the minimum" in report.results[0]["reason"]
    assert runtime.skill_parameters.all_current() == []
    assert runtime.model_fitting.recompute(OPERATOR)["states"] == 0
    assert versions(runtime) == {"default-1"}


def test_a_fit_is_adopted_and_every_estimate_recomputed_under_it(runtime, clock):
    pids = learners(runtime, clock, 60, 12)
    before = {pid: runtime.knowledge.list(SERVICE, None, pid)[0]["mastery_level"] for pid in pids[:5]}

    report = runtime.model_fitting.fit(OPERATOR)
    recomputed = runtime.model_fitting.recompute(OPERATOR, batch_size=25)

    (current,) = runtime.skill_parameters.all_current()
    assert report.fitted == report.changed == 1 and report.learners == 60 and report.observations == 720
    assert current["version"].startswith("em-") and (current["learners"], current["observations"]) == (60, 720)
    assert recomputed == {"states": 60, "skills": 1, "learners": 60}
    assert versions(runtime) == {current["version"]}
    for pid in pids[:5]:
        (state,) = runtime.knowledge.list(SERVICE, None, pid)
        explained = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
        assert explained["parameters"]["version"] == current["version"] == state["parameters_version"]
        assert explained["parameters"]["slip"] == current["slip"]
        assert explained["steps"][-1]["after"] == state["mastery_level"] != before[pid]
        assert current["version"] in explained["summary"]
    # Fitted again on the same evidence: the same version, nothing to recompute.
    assert runtime.model_fitting.fit(OPERATOR).changed == 0
    assert runtime.model_fitting.recompute(OPERATOR)["states"] == 0


def test_evidence_after_a_fit_is_folded_in_under_the_new_version(runtime, clock):
    pids = learners(runtime, clock, 60, 12)
    runtime.model_fitting.fit(OPERATOR)   # adopted, not recomputed yet
    (current,) = runtime.skill_parameters.all_current()

    runtime.evidence.ingest(SERVICE, None, pids[0], [{"evidence_id": "after-fit", "domain": "math",
                                                      "topic": "algebra", "item_id": "q", "correct": True,
                                                      "observed_at": clock()}])

    (state,) = runtime.knowledge.list(SERVICE, None, pids[0])
    assert state["parameters_version"] == current["version"]  # rebuilt under it, not resumed
    explained = runtime.knowledge.explanation(SERVICE, None, pids[0], "math", "algebra")
    assert explained["steps"][-1]["after"] == state["mastery_level"] and len(explained["steps"]) == 13
    assert runtime.model_fitting.recompute(OPERATOR)["states"] == 59


def test_each_run_is_one_audit_event_with_counts_and_no_subject(runtime, clock):
    learners(runtime, clock, 60, 12)
    events_before = len(runtime.audit.query(limit=1000))

    runtime.model_fitting.fit(OPERATOR)
    runtime.model_fitting.recompute(OPERATOR)

    new = runtime.audit.query(limit=1000)[events_before:]
    assert [(e.action, e.subject_hash, e.actor_id) for e in new] == [
        ("model_fit", None, "script:test"), ("model_recompute", None, "script:test")]
    assert new[0].details == {"skills": 1, "fitted": 1, "changed": 1, "learners": 60, "observations": 720}
    assert new[1].details == {"states": 60, "skills": 1, "learners": 60}


def test_fitting_writes_nothing_but_the_parameters_and_the_recomputed_estimates(runtime, clock, config):
    learners(runtime, clock, 60, 12)
    evidence = runtime.twin_db.query("SELECT * FROM evidence ORDER BY id")
    files = {p.relative_to(config.data_dir) for p in config.data_dir.rglob("*")}

    runtime.model_fitting.fit(OPERATOR)

    assert [tuple(r) for r in runtime.twin_db.query("SELECT * FROM evidence ORDER BY id")] == \
        [tuple(r) for r in evidence]
    assert {p.relative_to(config.data_dir) for p in config.data_dir.rglob("*")} <= files
    rows = runtime.twin_db.query("SELECT * FROM skill_parameters")
    assert len(rows) == 1 and all(not isinstance(v, bytes) for v in tuple(rows[0]))


def test_a_skill_whose_learners_were_erased_goes_back_to_the_defaults(runtime, clock):
    pids = learners(runtime, clock, 55, 12)
    runtime.model_fitting.fit(OPERATOR)
    runtime.model_fitting.recompute(OPERATOR)
    for pid in pids[:10]:
        runtime.subject_requests.erase(OPERATOR, None, profile_id=pid)

    report = runtime.model_fitting.fit(OPERATOR)
    runtime.model_fitting.recompute(OPERATOR)

    assert (report.fitted, report.changed, report.learners) == (0, 1, 45)
    assert runtime.skill_parameters.all_current() == []
    assert versions(runtime) == {"default-1"}


@pytest.mark.parametrize("options", [{"min_learners": 5, "min_observations": 50}])
def test_the_minimum_evidence_is_an_option(runtime, clock, options):
    learners(runtime, clock, 10, 10)

    assert runtime.model_fitting.fit(OPERATOR, **options).fitted == 1
