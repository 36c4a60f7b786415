"""The values the evolution store takes and returns, and their validation.

Inputs are checked in Python before any SQL runs, so a bad row in a batch is reported by its
position and nothing of the batch is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from twin.storage.timestamps import parse_to_db

from .errors import EvolutionValidationError

ROUND_STATUSES = ("running", "completed", "failed", "aborted")
MAX_AGENT_ID = 200


@dataclass(frozen=True)
class Round:
    """One evolution round (a round number and generation)."""

    id: int
    round_number: int
    generation: int
    started_at: str
    population_size: int | None
    mutation_rate: float | None
    selection_pressure: float | None
    status: str
    metadata: Any
    finished_at: str | None


@dataclass(frozen=True)
class FitnessRecord:
    """One agent's fitness in a round (input of ``record_fitness``)."""

    agent_id: str
    fitness_score: float
    performance_metrics: Any = None
    resource_usage: Any = None
    timestamp: datetime | str | None = None


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    agent_id: str
    fitness_score: float


@dataclass(frozen=True)
class FitnessPoint:
    """One point of an agent's fitness history."""

    round_id: int
    round_number: int
    generation: int
    fitness_score: float
    timestamp: str


@dataclass(frozen=True)
class ResourceSample:
    """Resource utilisation at one moment. ``round_id`` is filled in on the way out."""

    cpu_usage: float | None = None
    memory_usage_mb: float | None = None
    network_io_kb: float | None = None
    disk_io_kb: float | None = None
    gpu_usage: float | None = None
    timestamp: datetime | str | None = None
    round_id: int | None = None


RESOURCE_FIELDS = ("cpu_usage", "memory_usage_mb", "network_io_kb", "disk_io_kb", "gpu_usage")


@dataclass(frozen=True)
class SelectionOutcome:
    """A selection/reproduction event: a parent selected, possibly producing a child."""

    parent_agent_id: str
    child_agent_id: str | None = None
    selection_method: str | None = None
    crossover_points: Any = None
    mutation_applied: bool = False
    survival_reason: str | None = None
    timestamp: datetime | str | None = None
    round_id: int | None = None


@dataclass(frozen=True)
class LineageLink:
    """A parent -> child edge, ``depth`` generations away from the agent asked about."""

    parent_agent_id: str
    child_agent_id: str
    round_id: int
    depth: int


# -- validation helpers ---------------------------------------------------------------------

def timestamp_param(value: datetime | str | None, default: str, *, index: int | None = None) -> str:
    """A stored timestamp from a datetime or an ISO-8601 string (any offset; naive = UTC)."""
    if value is None:
        return default
    try:
        return parse_to_db(value)
    except ValueError:
        pass
    raise EvolutionValidationError(f"timestamp must be a datetime or ISO-8601 string, got {value!r}",
                                   index=index)


def agent_id_param(value: Any, what: str = "agent_id", *, index: int | None = None) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_AGENT_ID:
        raise EvolutionValidationError(f"{what} must be a non-empty string of at most "
                                       f"{MAX_AGENT_ID} characters", index=index)
    return value


def finite_number(value: Any, what: str, *, index: int | None = None,
                  minimum: float | None = None, maximum: float | None = None) -> float:
    # bool is an int subclass: True as a score is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvolutionValidationError(f"{what} must be a finite number, got {value!r}", index=index)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        bounds = f"{low}..{high}"
        raise EvolutionValidationError(f"{what} must be in {bounds}, got {value!r}", index=index)
    return float(value)


def optional_number(value: Any, what: str, *, index: int | None = None,
                    minimum: float | None = None, maximum: float | None = None) -> float | None:
    return None if value is None else finite_number(value, what, index=index, minimum=minimum,
                                                    maximum=maximum)


# One shared encoder: json.dumps with non-default options builds a new encoder per call,
# which is a measurable share of a 100k-rows/s insert path.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def json_param(value: Any, what: str, *, index: int | None = None) -> str | None:
    if value is None:
        return None
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise EvolutionValidationError(f"{what} is not JSON-serialisable ({exc})",
                                       index=index) from None


def json_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def fitness_params(row: Any, round_id: int, now: str, index: int) -> tuple[Any, ...]:
    """The SQL parameters of one fitness row given as a FitnessRecord, tuple or mapping."""
    # Fast path for the hot case, a plain ``(agent_id, score)`` pair that is valid: five
    # helper calls per row are a visible share of a 100k-rows/s batch. Anything else (and any
    # invalid pair) takes the general path below, which names the problem.
    if type(row) is tuple and len(row) == 2:
        agent, score = row
        if (type(agent) is str and 0 < len(agent) <= MAX_AGENT_ID
                and type(score) in (float, int) and math.isfinite(score)):
            return (round_id, agent, float(score), None, None, now)
    if isinstance(row, FitnessRecord):
        agent, score, perf, usage, ts = (row.agent_id, row.fitness_score, row.performance_metrics,
                                         row.resource_usage, row.timestamp)
    elif isinstance(row, tuple):
        if not 2 <= len(row) <= 4:
            raise EvolutionValidationError(
                "a fitness tuple is (agent_id, score[, performance_metrics[, resource_usage]])",
                index=index)
        agent, score = row[0], row[1]
        perf = row[2] if len(row) > 2 else None
        usage = row[3] if len(row) > 3 else None
        ts = None
    elif isinstance(row, Mapping):
        unknown = set(row) - {"agent_id", "fitness_score", "performance_metrics", "resource_usage",
                              "timestamp"}
        if unknown:
            raise EvolutionValidationError(f"unknown fitness fields {sorted(unknown)}", index=index)
        agent, score = row.get("agent_id"), row.get("fitness_score")
        perf, usage = row.get("performance_metrics"), row.get("resource_usage")
        ts = row.get("timestamp")
    else:
        raise EvolutionValidationError(
            f"a fitness row is a FitnessRecord, tuple or mapping, got {type(row).__name__}",
            index=index)
    return (round_id, agent_id_param(agent, index=index),
            finite_number(score, "fitness_score", index=index),
            json_param(perf, "performance_metrics", index=index),
            json_param(usage, "resource_usage", index=index),
            timestamp_param(ts, now, index=index))


def _as_fields(row: Any, cls: type, index: int) -> dict[str, Any]:
    if isinstance(row, cls):
        return {name: getattr(row, name) for name in cls.__dataclass_fields__}
    if isinstance(row, Mapping):
        unknown = set(row) - set(cls.__dataclass_fields__) - {"round_id"}
        if unknown:
            raise EvolutionValidationError(f"unknown fields {sorted(unknown)}", index=index)
        return dict(row)
    raise EvolutionValidationError(f"expected a {cls.__name__} or mapping, got {type(row).__name__}",
                                   index=index)


def resource_params(row: Any, round_id: int, now: str, index: int) -> tuple[Any, ...]:
    fields = _as_fields(row, ResourceSample, index)
    values = [optional_number(fields.get(name), name, index=index, minimum=0)
              for name in RESOURCE_FIELDS]
    if all(v is None for v in values):
        raise EvolutionValidationError("a resource sample needs at least one figure", index=index)
    return (round_id, *values, timestamp_param(fields.get("timestamp"), now, index=index))


def selection_params(row: Any, round_id: int, now: str, index: int) -> tuple[Any, ...]:
    fields = _as_fields(row, SelectionOutcome, index)
    parent = agent_id_param(fields.get("parent_agent_id"), "parent_agent_id", index=index)
    child = fields.get("child_agent_id")
    if child is not None:
        agent_id_param(child, "child_agent_id", index=index)
        if child == parent:
            raise EvolutionValidationError("an agent cannot be its own child", index=index)
    method, reason = fields.get("selection_method"), fields.get("survival_reason")
    for what, text in (("selection_method", method), ("survival_reason", reason)):
        if text is not None and not isinstance(text, str):
            raise EvolutionValidationError(f"{what} must be a string", index=index)
    mutation = fields.get("mutation_applied", False)
    if not isinstance(mutation, bool):
        raise EvolutionValidationError("mutation_applied must be a bool", index=index)
    return (round_id, parent, child, method,
            json_param(fields.get("crossover_points"), "crossover_points", index=index),
            int(mutation), reason, timestamp_param(fields.get("timestamp"), now, index=index))


def round_from_row(row: Any) -> Round:
    """A ``Round`` from an ``evolution_rounds`` row."""
    return Round(id=row["id"], round_number=row["round_number"], generation=row["generation"],
                 started_at=row["timestamp"], population_size=row["population_size"],
                 mutation_rate=row["mutation_rate"], selection_pressure=row["selection_pressure"],
                 status=row["status"], metadata=json_value(row["metadata"]),
                 finished_at=row["finished_at"])
