"""Why the model believes what it believes: a trace as the steps that moved its estimate.

``explain(trace)`` gives::

    {"mastery_level": 0.83, "confidence_score": 0.41, "source": "evidence",
     "parameters": {"version": "em-…", "prior": …, "learn": …, "slip": …, "guess": …, "forget": …},
     "steps": [{"kind": "carried_over", "count": 30, "manual_values": 0,
                "first_observed_at": …, "last_observed_at": …, "parameters_version": …,
                "before": 0.3, "after": 0.64},                        # only after a purge
               {"kind": "manual", "set_at": …, "before": 0.64, "after": 0.5},
               {"kind": "observation", "evidence_id": "e-1", "observed_at": …, "correct": true,
                "before": 0.5, "after": 0.74}, …],
     "summary": "Mastery 0.83 (confidence 0.41) comes from …."}

Invariants: each step's ``before`` is the previous step's ``after`` (the first one's is the
skill's prior), and the last step's ``after`` is ``mastery_level``, exactly (no rounding).
It is computed from the evidence on demand: item ids and outcomes are personal, so an
explanation is never stored in clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .evidence import ManualValue, Observation, iso

if TYPE_CHECKING:
    from .trace import MasteryTrace


def _step(entry: Observation | ManualValue, before: float, after: float) -> dict[str, Any]:
    if isinstance(entry, ManualValue):
        step: dict[str, Any] = {"kind": "manual", "set_at": iso(entry.set_at)}
        if entry.confidence is not None:
            step["confidence_score"] = entry.confidence
    else:
        step = {"kind": "observation", "evidence_id": entry.evidence_id,
                "observed_at": iso(entry.observed_at)}
        if entry.correct is not None:
            step["correct"] = entry.correct
        else:
            step["score"] = entry.score
    step["before"], step["after"] = before, after
    return step


def explain(trace: "MasteryTrace") -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    carried = trace.carried
    if carried is not None:
        steps.append({"kind": "carried_over", "count": carried.observations,
                      "manual_values": carried.manual_values,
                      "first_observed_at": iso(carried.first_at),
                      "last_observed_at": iso(carried.last_at),
                      "parameters_version": carried.parameters_version,
                      "before": carried.before, "after": carried.mastery})
    steps.extend(_step(entry, before, after) for entry, before, after in trace.steps())
    params = trace.parameters
    return {"mastery_level": trace.mastery_level, "confidence_score": trace.confidence_score,
            "source": trace.source, "parameters": {"version": params.version, **params.values()},
            "steps": steps, "summary": summary(trace)}


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(trace: "MasteryTrace") -> str:
    """One sentence: the value, what it rests on, and the parameters used."""
    params = trace.parameters
    named = (f"parameters {params.version} (prior {params.prior:.2f}, learn {params.learn:.2f}, "
             f"slip {params.slip:.2f}, guess {params.guess:.2f}"
             + (f", forget {params.forget:.2f}" if params.forget else "") + ")")
    mastery = trace.mastery_level
    if trace.source == "prior":
        return f"No evidence yet, so mastery {mastery:.2f} is the prior of {named}."
    entries = trace.entries
    observations = [e for e in entries if isinstance(e, Observation)]
    manuals = [e for e in entries if isinstance(e, ManualValue)]
    correct = sum(1 for o in observations if o.correct is True)
    wrong = sum(1 for o in observations if o.correct is False)
    scored = len(observations) - correct - wrong
    if trace.source == "manual" and (manuals or not entries):
        when = _day(manuals[-1].set_at) if manuals else _day(trace.carried.last_at)
        text = f"Mastery {mastery:.2f} was set manually on {when}"
        if observations:
            text += f", after {_plural(len(observations), 'observation')}"
    else:
        tally = f"{correct} correct, {wrong} wrong" + (f", {scored} scored" if scored else "")
        text = f"Mastery {mastery:.2f} (confidence {trace.confidence_score:.2f}) comes from "
        if observations:
            text += (f"{_plural(len(observations), 'observation')} ({tally}) between "
                     f"{_day(observations[0].observed_at)} and {_day(observations[-1].observed_at)}")
        else:
            text += "observations purged by retention"
        if manuals:
            text += (f", continuing from the manual value {manuals[-1].mastery:.2f} set on "
                     f"{_day(manuals[-1].set_at)}")
    carried = trace.carried
    if carried is not None:
        text += (f", after {_plural(carried.observations, 'earlier observation')} "
                 f"({_day(carried.first_at)} to {_day(carried.last_at)}) that retention purged, "
                 f"carried over as mastery {carried.mastery:.2f}")
    return f"{text}, under {named}."
