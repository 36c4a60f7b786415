"""One learner's mastery of one skill, traced through their evidence in time order.

A ``MasteryTrace`` keeps the retained entries (observations and manual values) sorted by time
and the mastery after each. An entry arriving late (older than some already seen) is inserted at
its place and everything from there on is recomputed, so the result is always exactly what
processing the time-sorted sequence gives, and an entry arriving in order costs one update.

A manual value replaces the mastery at its instant; evidence after it continues from it.

Retention: ``purge_before(cutoff)`` drops the entries older than the cutoff and folds them into
a ``CarriedOver`` summary (their counts, time range, the mastery after them, the confidence
accumulator and the FSRS card after them), so the estimate, the confidence and the
explanation's "last step's after is the mastery" all survive the purge. An entry older than
purged ones cannot be folded in any more and is refused (``BeforeRetainedWindowError``).

confidence_score (how much to trust the estimate) is the model's track record on this learner:
each observation scores the prediction the model made before seeing it by its Brier skill
against a coin flip, max(0, 1 − 4·(outcome − predicted)²) (1: predicted with certainty, 0: no
better than 50/50), and

    confidence = Σ skill / (observations + 3)

The three pseudo-observations of zero skill make a little evidence count for little (one perfect
prediction gives 0.25, ten 0.77); answers that keep surprising the model (inconsistent
evidence: guessing, slips, a skill that is really several) keep it low however many there are.
A manual value that gave a confidence keeps it until the next observation.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping

from fsrs import Card

from . import review
from .bkt import predict_correct, update
from .errors import (BeforeRetainedWindowError, ConflictingEvidenceError, InvalidObservationError,
                     InvalidParametersError)
from .evidence import Entry, ManualValue, Observation, as_utc
from .parameters import DEFAULT_PARAMETERS, SkillParameters

CONFIDENCE_PSEUDO_COUNT = 3.0


@dataclass(frozen=True, slots=True)
class CarriedOver:
    """What is kept of entries purged by retention (stored sealed: it derives from outcomes)."""

    observations: int
    manual_values: int
    first_at: datetime
    last_at: datetime
    before: float               # mastery the purged run started from
    mastery: float              # mastery after the purged entries
    skill_sum: float            # their part of the confidence accumulator
    source: str                 # "evidence" or "manual": what the last purged entry was
    manual_confidence: float | None
    parameters_version: str     # the version current when they were last computed
    review_card: dict[str, Any]  # the FSRS card after them

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that deep-copies recursively, and an ingest
        # stores one summary per touched skill.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["first_at"], data["last_at"] = self.first_at.isoformat(), self.last_at.isoformat()
        data["review_card"] = dict(self.review_card)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CarriedOver":
        try:
            values = dict(data)
            values["first_at"] = as_utc(values["first_at"], "first_at")
            values["last_at"] = as_utc(values["last_at"], "last_at")
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidObservationError(f"not a carried-over summary: {exc}",
                                          field="carried_over") from None


@dataclass(frozen=True, slots=True)
class AddResult:
    new: int
    repeats: int


class MasteryTrace:
    """The estimate of one (learner, domain, topic)."""

    __slots__ = ("_params", "_carried", "_keys", "_entries", "_outcome", "_after", "_skill", "_ids",
                 "_card")

    def __init__(self, parameters: SkillParameters = DEFAULT_PARAMETERS, *,
                 carried: CarriedOver | None = None, entries: Iterable[Entry] = ()) -> None:
        if not isinstance(parameters, SkillParameters):
            raise InvalidParametersError("parameters must be a SkillParameters", field="parameters")
        self._params = parameters
        self._carried = carried
        # parallel columns, in time order: sort key, entry, outcome (None: a manual value),
        # mastery after it, Brier skill of the prediction before it (None: a manual value)
        self._keys: list[tuple[datetime, int, str]] = []
        self._entries: list[Entry] = []
        self._outcome: list[float | None] = []
        self._after: list[float] = []
        self._skill: list[float | None] = []
        self._ids: dict[str, Observation] = {}
        self._card: Card | None = None
        self.add(entries)

    # -- reading ---------------------------------------------------------------------------
    @property
    def parameters(self) -> SkillParameters:
        return self._params

    @property
    def carried(self) -> CarriedOver | None:
        return self._carried

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    @property
    def start(self) -> float:
        """Mastery before the first retained entry: the carried-over value, else the prior."""
        return self._carried.mastery if self._carried else self._params.prior

    @property
    def mastery_level(self) -> float:
        return self._after[-1] if self._after else self.start

    @property
    def source(self) -> str:
        """``evidence`` or ``manual`` (what set the current value), ``prior`` if nothing did."""
        if self._entries:
            return "manual" if isinstance(self._entries[-1], ManualValue) else "evidence"
        return self._carried.source if self._carried else "prior"

    @property
    def observation_count(self) -> int:
        """Observations behind the estimate, purged ones included."""
        retained = sum(1 for skill in self._skill if skill is not None)
        return retained + (self._carried.observations if self._carried else 0)

    @property
    def confidence_score(self) -> float:
        last = self._entries[-1] if self._entries else None
        if isinstance(last, ManualValue) and last.confidence is not None:
            return last.confidence
        if last is None and self._carried and self._carried.manual_confidence is not None:
            return self._carried.manual_confidence
        skills = [skill for skill in self._skill if skill is not None]
        carried_sum = self._carried.skill_sum if self._carried else 0.0
        total = math.fsum(skills) + carried_sum
        return total / (self.observation_count + CONFIDENCE_PSEUDO_COUNT)

    def predicted_correct(self) -> float:
        """P(the next response is correct)."""
        return predict_correct(self.mastery_level, self._params)

    def steps(self) -> Iterator[tuple[Entry, float, float]]:
        """(entry, mastery before, mastery after) for each retained entry, in time order."""
        before = self.start
        for entry, after in zip(self._entries, self._after):
            yield entry, before, after
            before = after

    def review_card(self) -> Card:
        """The topic's FSRS card after every observation (see review.py)."""
        if self._card is None:
            observations = (e for e in self._entries if isinstance(e, Observation))
            self._card = review.fold(self.review_card_start(), observations)
        return self._card

    def review_card_start(self) -> Card:
        """The FSRS card before the first retained observation."""
        return review.card_from_dict(self._carried.review_card if self._carried else None)

    def explain(self) -> dict[str, Any]:
        from .explanation import explain
        return explain(self)

    # -- changing --------------------------------------------------------------------------
    def observe(self, observation: Observation) -> bool:
        """Fold one observation in; False if it is a repeat of one already held."""
        if not isinstance(observation, Observation):
            raise InvalidObservationError("not an Observation")
        known = self._ids.get(observation.evidence_id)
        if known is not None:
            if known == observation:
                return False
            raise ConflictingEvidenceError([observation.evidence_id])
        self._check_window(observation, None)
        self._insert_one(observation)
        self._ids[observation.evidence_id] = observation
        return True

    def set_manual(self, value: ManualValue) -> None:
        """A mastery set by hand at ``value.set_at`` (replacing one set at the same instant)."""
        self.add((value,))

    def add(self, items: Iterable[Entry]) -> AddResult:
        """Fold a batch in, all or nothing: repeats (same id, same content) are skipped, an id
        reused with other content raises ``ConflictingEvidenceError`` naming every such id."""
        fresh: list[Entry] = []
        batch_ids: dict[str, Observation] = {}
        conflicts: list[str] = []
        repeats = 0
        for index, item in enumerate(items):
            if isinstance(item, Observation):
                known = self._ids.get(item.evidence_id) or batch_ids.get(item.evidence_id)
                if known is not None:
                    if known == item:
                        repeats += 1
                    else:
                        conflicts.append(item.evidence_id)
                    continue
                batch_ids[item.evidence_id] = item
            elif not isinstance(item, ManualValue):
                raise InvalidObservationError("not an Observation or a ManualValue", index=index)
            self._check_window(item, index)
            fresh.append(item)
        if conflicts:
            raise ConflictingEvidenceError(sorted(set(conflicts)))
        if len(fresh) == 1:
            self._insert_one(fresh[0])
        elif fresh:
            self._insert_many(fresh)
        self._ids.update(batch_ids)
        return AddResult(new=len(batch_ids), repeats=repeats)

    def _check_window(self, item: Entry, index: int | None) -> None:
        if self._carried is not None and item.sort_key[0] <= self._carried.last_at:
            raise BeforeRetainedWindowError(
                "older than observations already purged by retention; it cannot be folded in",
                field="observed_at" if isinstance(item, Observation) else "set_at", index=index)

    def _insert_one(self, entry: Entry) -> None:
        key = entry.sort_key
        keys = self._keys
        at = len(keys) if not keys or key > keys[-1] else bisect_left(keys, key)
        outcome = entry.outcome if isinstance(entry, Observation) else None
        if at < len(keys) and keys[at] == key:          # a manual value set again: replace it
            self._entries[at] = entry
        else:
            keys.insert(at, key)
            self._entries.insert(at, entry)
            self._outcome.insert(at, outcome)
            self._after.insert(at, 0.0)
            self._skill.insert(at, None)
        self._recompute(at)

    def _insert_many(self, fresh: list[Entry]) -> None:
        keys = [entry.sort_key for entry in fresh]
        first = bisect_left(self._keys, min(keys))
        merged = dict(zip(self._keys[first:], self._entries[first:]))
        merged.update(zip(keys, fresh))                 # a manual value set again replaces
        tail = sorted(merged.items())
        for column in (self._keys, self._entries, self._outcome, self._after, self._skill):
            del column[first:]
        self._keys.extend(key for key, _ in tail)
        self._entries.extend(entry for _, entry in tail)
        self._outcome.extend(e.outcome if isinstance(e, Observation) else None for _, e in tail)
        self._after.extend([0.0] * len(tail))
        self._skill.extend([None] * len(tail))
        self._recompute(first)

    def _recompute(self, first: int) -> None:
        """Mastery and confidence skill of every entry from ``first`` on (the hot loop)."""
        params, after, skill, outcomes = self._params, self._after, self._skill, self._outcome
        p = after[first - 1] if first else self.start
        for j in range(first, len(outcomes)):
            outcome = outcomes[j]
            if outcome is None:                         # a manual value
                p = self._entries[j].mastery            # type: ignore[union-attr]
                skill[j] = None
            else:
                error = outcome - predict_correct(p, params)
                score = 1.0 - 4.0 * error * error
                skill[j] = score if score > 0.0 else 0.0
                p = update(p, outcome, params)
            after[j] = p
        self._card = None

    def purge_before(self, cutoff: datetime | str) -> int:
        """Drop entries older than ``cutoff`` into the carried-over summary; returns how many
        observations were purged."""
        cutoff = as_utc(cutoff, "cutoff")
        count = bisect_left(self._keys, (cutoff,))
        if count == 0:
            return 0
        purged = self._entries[:count]
        observations = [e for e in purged if isinstance(e, Observation)]
        old = self._carried
        last = purged[-1]
        card = review.fold(self.review_card_start(), observations)
        self._carried = CarriedOver(
            observations=(old.observations if old else 0) + len(observations),
            manual_values=(old.manual_values if old else 0) + count - len(observations),
            first_at=old.first_at if old else self._keys[0][0],
            last_at=self._keys[count - 1][0],
            before=old.before if old else self._params.prior,
            mastery=self._after[count - 1],
            skill_sum=math.fsum(s for s in self._skill[:count] if s is not None)
            + (old.skill_sum if old else 0.0),
            source="manual" if isinstance(last, ManualValue) else "evidence",
            manual_confidence=last.confidence if isinstance(last, ManualValue) else None,
            parameters_version=self._params.version,
            review_card=card.to_dict())
        for obs in observations:
            del self._ids[obs.evidence_id]
        for column in (self._keys, self._entries, self._outcome, self._after, self._skill):
            del column[:count]
        return len(observations)

    def with_parameters(self, parameters: SkillParameters) -> "MasteryTrace":
        """The same evidence under another parameter set (after a refit). Retained entries are
        recomputed; a carried-over summary keeps its mastery (its observations are gone) and
        the version it was computed under."""
        return MasteryTrace(parameters, carried=self._carried, entries=self._entries)

    def __repr__(self) -> str:
        return (f"MasteryTrace(mastery={self.mastery_level:.3f}, entries={len(self._entries)}, "
                f"version={self._params.version!r})")
