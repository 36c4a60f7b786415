"""The explanation: the steps that moved the estimate, the parameters, one sentence."""

import json

import pytest

from twin.learner_model import ManualValue, MasteryTrace, explain

from .conftest import at, obs


def test_each_step_shows_mastery_before_and_after_and_the_last_is_the_mastery(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("b", 1, False),
                                          obs("c", 2, score=0.75)])
    explanation = explain(trace)
    assert explanation["mastery_level"] == trace.mastery_level
    assert explanation["confidence_score"] == trace.confidence_score
    assert explanation["parameters"] == {"version": "test-1", "prior": 0.4, "learn": 0.2,
                                         "slip": 0.1, "guess": 0.25, "forget": 0.0}
    steps = explanation["steps"]
    assert steps[0] == {"kind": "observation", "evidence_id": "a",
                        "observed_at": "2026-03-02T09:00:00Z", "correct": True,
                        "before": 0.4, "after": pytest.approx(13 / 17)}
    assert steps[1]["correct"] is False and "score" not in steps[1]
    assert steps[2]["score"] == 0.75 and "correct" not in steps[2]
    for previous, step in zip(steps, steps[1:]):
        assert step["before"] == previous["after"]
    assert steps[-1]["after"] == explanation["mastery_level"]
    json.dumps(explanation)                       # plain JSON, ready for a response or export


def test_the_manual_step_is_shown_where_it_happened(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True)])
    trace.set_manual(ManualValue(at(1), 0.5, confidence=0.6))
    trace.observe(obs("b", 2, True))
    steps = trace.explain()["steps"]
    assert steps[1] == {"kind": "manual", "set_at": "2026-03-03T09:00:00Z",
                        "confidence_score": 0.6, "before": steps[0]["after"], "after": 0.5}
    assert steps[2]["before"] == 0.5


def test_the_summary_is_one_sentence_naming_value_evidence_and_version(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("b", 1, False), obs("c", 3, True)])
    trace.set_manual(ManualValue(at(0.5), 0.5))
    text = trace.explain()["summary"]
    assert text == (f"Mastery {trace.mastery_level:.2f} (confidence {trace.confidence_score:.2f}) "
                    "comes from 3 observations (2 correct, 1 wrong) between 2026-03-02 and "
                    "2026-03-05, continuing from the manual value 0.50 set on 2026-03-02, under "
                    "parameters test-1 (prior 0.40, learn 0.20, slip 0.10, guess 0.25).")
    assert text.count(". ") == 0 and text.endswith(".")


def test_without_evidence_the_summary_says_it_is_the_prior(params):
    explanation = MasteryTrace(params).explain()
    assert explanation["steps"] == []
    assert explanation["source"] == "prior"
    assert explanation["summary"] == ("No evidence yet, so mastery 0.40 is the prior of parameters "
                                      "test-1 (prior 0.40, learn 0.20, slip 0.10, guess 0.25).")


def test_a_manual_value_as_the_latest_entry_is_summarised_as_manual(params):
    trace = MasteryTrace(params, entries=[obs("a", 0, True), obs("b", 1, True)])
    trace.set_manual(ManualValue(at(2), 0.25))
    assert trace.explain()["summary"].startswith(
        "Mastery 0.25 was set manually on 2026-03-04, after 2 observations, under parameters test-1")
