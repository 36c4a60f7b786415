"""Knowledge states as the learner model's traces: a ``MasteryTrace`` loaded from its rows,
entries folded in, and what a knowledge state stores (twin/learner_model/README.md, "Integration
contract").

Per (profile, domain, topic), the evidence rows (observations and manual values, sealed) are
the record. The knowledge state row holds what is served in clear (``mastery_level``,
``confidence_score``, ``source``, ``parameters_version``, ``review_due``) and two sealed
summaries, both ``CarriedOver`` documents:

- ``carried_over``: what retention kept of purged evidence, where a rebuild starts;
- ``model_checkpoint``: the same summary over *all* the evidence so far, where an append
  resumes. Entries that all come after it, under the parameters it was computed with, fold in
  from it: one read (the state row) and one write per skill, however long the history. Anything
  else (a late entry, a refit since) rebuilds the trace from the retained rows. Both give the
  same estimate: the model folds entries after a summary exactly as after retained entries.

A knowledge state PUT before the learner model existed has neither summary: its stored value is
read as a manual value set at its last update, and stored as one when the state is next written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from compliance.id_hashing import SubjectHasher
from compliance.subject_keys import FieldReader, FieldSealer, KeyProof
from twin.learner_model import (BeforeRetainedWindowError, CarriedOver, LearnerModelError, ManualValue,
                                MasteryTrace, Observation, SkillParameters)
from twin.learner_model.evidence import Entry, as_utc
from twin.storage.bulk import insert_rows
from twin.storage.pipeline import execute_at_commit
from twin.storage.timestamps import from_db, to_db

from .tables import EVIDENCE, KNOWLEDGE

SkillKey = tuple[str, str]  # (domain, topic)

STATE_COLUMNS = ("profile_id", "knowledge_domain", "topic", "mastery_level", "confidence_score",
                 "last_accessed", "source", "parameters_version", "carried_over", "model_checkpoint")
_BY_SKILL = "profile_id = ? AND knowledge_domain = ? AND topic = ?"
_STATES = f"SELECT {', '.join(STATE_COLUMNS)} FROM {KNOWLEDGE.name} WHERE profile_id = ?"
_SKILLS_PER_STATEMENT = 400  # two parameters each, well below any engine's limit
_KEY = ("profile_id", "knowledge_domain", "topic")
_ENTRY_COLUMNS = ("profile_id", "entry_key", "kind", "observed_at", "content")
_ENTRIES = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM {EVIDENCE.name} WHERE {_BY_SKILL}"
_STORED = ("profile_id", "knowledge_domain", "topic", "kind", "observed_at", "content", "recorded_at",
           "entry_key")
# A manual value set again at the same instant replaces the earlier one (the model does too).
_UPSERT_MANUAL = EVIDENCE.upsert_sql(_STORED, ("profile_id", "entry_key"))
_INSERT_OBSERVATION = EVIDENCE.insert_sql(_STORED)
_ONE_MICROSECOND = timedelta(microseconds=1)


class EntryKeys:
    """The keyed hashes rows are found by without unsealing: an observation's by the client's
    evidence id (unique per profile), a manual value's by its skill and instant."""

    def __init__(self, hasher: SubjectHasher) -> None:
        self._hasher = hasher

    def observation(self, profile_id: str, evidence_id: str) -> str:
        return self._hasher.keyed("evidence", f"{profile_id}\x00{evidence_id}")

    def manual(self, profile_id: str, skill: SkillKey, set_at: datetime) -> str:
        return self._hasher.keyed("manual-value", f"{profile_id}\x00{skill[0]}\x00{skill[1]}\x00{to_db(set_at)}")


@dataclass(frozen=True)
class NewEntry:
    """An entry to store: the model's view of it, the sealed content of its row, its keyed
    hash, and its place in the request that brought it (for errors)."""

    entry: Entry
    content: dict[str, Any]
    entry_key: str
    index: int | None = None


@dataclass(frozen=True)
class SkillState:
    """One knowledge state row as the model reads it (``row`` None: no state yet)."""

    profile_id: str
    skill: SkillKey
    row: Any | None
    carried: CarriedOver | None
    checkpoint: CarriedOver | None

    @property
    def legacy(self) -> ManualValue | None:
        """The value of a state set before the learner model, as a manual value."""
        if self.row is None or self.checkpoint is not None:
            return None
        return ManualValue(from_db(self.row["last_accessed"]), self.row["mastery_level"],
                           self.row["confidence_score"])

    @property
    def parameters_version(self) -> str | None:
        return None if self.row is None else self.row["parameters_version"]



def proof_of(row: Any) -> KeyProof | None:
    """A ciphertext of the subject's current key in a knowledge state row, for ``keys.writer``."""
    if row["model_checkpoint"] is None:
        return None
    return KeyProof(KNOWLEDGE.name, "model_checkpoint", KNOWLEDGE.row_id_of(row), row["model_checkpoint"])


def row_id(profile_id: str, skill: SkillKey) -> str:
    return KNOWLEDGE.row_id_of({"profile_id": profile_id, "knowledge_domain": skill[0], "topic": skill[1]})


def state_of(row: Any, reader: FieldReader) -> SkillState:
    """A knowledge state row (``STATE_COLUMNS``) with its summaries opened."""
    decoded = KNOWLEDGE.decode(row, reader, ("carried_over", "model_checkpoint"))
    return SkillState(row["profile_id"], (row["knowledge_domain"], row["topic"]), row,
                      _summary(decoded["carried_over"]), _summary(decoded["model_checkpoint"]))


def _summary(data: dict[str, Any] | None) -> CarriedOver | None:
    return None if data is None else CarriedOver.from_dict(data)


def writers_lock(profile_id: str) -> str:
    """The named lock every writer of a profile's knowledge states and evidence holds (its
    ``write(fn, lock=...)``): concurrent writers of one learner's states queue for it instead of
    failing each other's serializable transactions, and each reads what the previous holder
    committed. Writers that do not take it (retention, recomputes, erasure) are ordered against
    them by row locks (``state_rows(for_update=...)``, ``require_live(hold=True)``)."""
    return f"knowledge-writers:{profile_id}"


def load_state(conn: Any, reader: FieldReader, profile_id: str, skill: SkillKey, *,
               for_update: str = "") -> SkillState:
    return load_states(conn, reader, profile_id, [skill], for_update=for_update)[skill]


def load_states(conn: Any, reader: FieldReader, profile_id: str, skills: Sequence[SkillKey], *,
                for_update: str = "") -> dict[SkillKey, SkillState]:
    """The profile's states of ``skills`` (each ``row`` None where there is none yet), read in
    one statement per 400 skills."""
    rows = state_rows(conn, profile_id, skills, for_update=for_update)
    return {skill: state_of(row, reader) if row is not None else SkillState(profile_id, skill, None, None, None)
            for skill, row in rows.items()}


def state_rows(conn: Any, profile_id: str, skills: Sequence[SkillKey], *,
               for_update: str = "") -> dict[SkillKey, Any | None]:
    """The stored rows (``STATE_COLUMNS``) of the profile's states of ``skills``, unopened.
    ``for_update`` (the dialect's) locks them until the transaction ends, for a READ COMMITTED
    writer: a concurrent purge or recompute of one waits for it, or it for them and then reads
    their commit."""
    found: dict[SkillKey, Any] = {}
    wanted = list(dict.fromkeys(skills))
    for start in range(0, len(wanted), _SKILLS_PER_STATEMENT):
        chunk = wanted[start:start + _SKILLS_PER_STATEMENT]
        where = " OR ".join("(knowledge_domain = ? AND topic = ?)" for _ in chunk)
        for row in conn.execute(f"{_STATES} AND ({where}){for_update}",
                                (profile_id, *(value for skill in chunk for value in skill))).fetchall():
            found[(row["knowledge_domain"], row["topic"])] = row
    return {skill: found.get(skill) for skill in wanted}


def entry_of(row: Any, reader: FieldReader) -> Entry:
    """The model's entry of one evidence row (``profile_id, entry_key, kind, observed_at, content``)."""
    return _entry(row, EVIDENCE.decode(row, reader, ("content",))["content"])


def _entry(row: Any, content: dict[str, Any]) -> Entry:
    at = from_db(row["observed_at"])
    if row["kind"] == "manual":
        return ManualValue(at, content["mastery_level"], content.get("confidence_score"))
    return Observation(content["evidence_id"], at, content.get("correct"), content.get("score"))


def retained_entries(conn: Any, reader: FieldReader, state: SkillState) -> list[Entry]:
    """The skill's evidence still stored, opened in one batch (and a pre-model state's value)."""
    rows = conn.execute(_ENTRIES, (state.profile_id, *state.skill)).fetchall()
    opened = EVIDENCE.decode_many(rows, reader, ("content",))
    entries = [_entry(row, decoded["content"]) for row, decoded in zip(rows, opened)]
    legacy = state.legacy
    return entries + [legacy] if legacy is not None else entries


def rebuild(conn: Any, reader: FieldReader, state: SkillState, params: SkillParameters) -> MasteryTrace:
    """The skill's trace from its retained evidence and what retention carried over."""
    return MasteryTrace(params, carried=state.carried, entries=retained_entries(conn, reader, state))


def fold(conn: Any, reader: FieldReader, state: SkillState, params: SkillParameters,
         fresh: Sequence[NewEntry]) -> MasteryTrace:
    """The trace with ``fresh`` folded in: resumed from the checkpoint when they all come after
    it under its parameters, else rebuilt. ``BeforeRetainedWindowError`` (its ``index`` that of
    the request) for an entry older than evidence retention purged."""
    entries = [f.entry for f in fresh]
    checkpoint = state.checkpoint
    if checkpoint is not None and checkpoint.parameters_version == params.version:
        try:
            return MasteryTrace(params, carried=checkpoint, entries=entries)
        except BeforeRetainedWindowError:
            pass  # a late entry: it goes in at its place among the retained ones
    trace = rebuild(conn, reader, state, params)
    try:
        trace.add(entries)
    except BeforeRetainedWindowError as exc:
        at = fresh[exc.index].index if exc.index is not None else None
        raise BeforeRetainedWindowError("older than observations already purged by retention; it "
                                        "cannot be folded in", field=exc.field, index=at) from None
    return trace


def checkpoint_of(trace: MasteryTrace) -> CarriedOver | None:
    """The summary of every entry of ``trace`` (it is folded into it: read the trace first)."""
    entries = trace.entries
    if entries:
        trace.purge_before(entries[-1].sort_key[0] + _ONE_MICROSECOND)
    return trace.carried


def review_due(checkpoint: CarriedOver | None) -> str | None:
    """When FSRS says the topic is due (None before its first observation)."""
    card = checkpoint.review_card if checkpoint is not None else None
    if not card or card.get("last_review") is None:
        return None
    return to_db(as_utc(card["due"], "due"))


def state_values(trace: MasteryTrace, writer: FieldSealer, profile_id: str, skill: SkillKey,
                 now: str) -> dict[str, Any]:
    """The knowledge state's stored values after ``trace`` (which this folds into its checkpoint)."""
    values: dict[str, Any] = {
        "mastery_level": trace.mastery_level, "confidence_score": trace.confidence_score,
        "source": trace.source if trace.source != "prior" else "evidence",
        "parameters_version": trace.parameters.version, "last_accessed": now}
    checkpoint = checkpoint_of(trace)
    values["review_due"] = review_due(checkpoint)
    values["model_checkpoint"] = KNOWLEDGE.seal(writer, row_id(profile_id, skill), "model_checkpoint",
                                                checkpoint.to_dict() if checkpoint else None)
    return values


def write_state(conn: Any, profile_id: str, skill: SkillKey, values: dict[str, Any]) -> None:
    """Insert the knowledge state, or update the given columns of the existing one."""
    write_states(conn, [(profile_id, skill, values)])


def write_states(conn: Any, states: Sequence[tuple[str, SkillKey, dict[str, Any]]], *,
                 at_commit: bool = False) -> None:
    """``write_state`` of each ``(profile_id, skill, values)``; one statement for those giving
    the same columns. ``at_commit``: each sent with the COMMIT (``execute_at_commit``)."""
    by_columns: dict[tuple[str, ...], list[tuple]] = {}
    for profile_id, skill, values in states:
        by_columns.setdefault(tuple(values), []).append((profile_id, *skill, *values.values()))
    for columns, rows in by_columns.items():
        sql = KNOWLEDGE.upsert_sql((*_KEY, *columns), _KEY)
        if at_commit:
            for row in rows:
                execute_at_commit(conn, sql, row)
        else:
            conn.executemany(sql, rows)


def entry_row(writer: FieldSealer, profile_id: str, skill: SkillKey, new: NewEntry, now: str) -> tuple:
    """The evidence row of a new entry (``_STORED``'s columns), its content sealed. Sealing needs
    nothing from the database: an ingest seals its rows before it takes the write lock."""
    row_key = EVIDENCE.row_id_of({"profile_id": profile_id, "entry_key": new.entry_key})
    is_manual = isinstance(new.entry, ManualValue)
    at = new.entry.set_at if is_manual else new.entry.observed_at
    return (profile_id, *skill, "manual" if is_manual else "observation", to_db(at),
            EVIDENCE.seal(writer, row_key, "content", new.content), now, new.entry_key)


def store_entries(conn: Any, writer: FieldSealer, profile_id: str, skill: SkillKey,
                  entries: Sequence[NewEntry], now: str) -> None:
    """Insert the rows of new entries (after their knowledge state exists: the foreign key)."""
    store_rows(conn, [entry_row(writer, profile_id, skill, new, now) for new in entries])


def store_rows(conn: Any, rows: Sequence[tuple], *, at_commit: bool = False) -> None:
    """Insert ``entry_row`` rows: observations in one statement, manual values one by one (one
    set again at the same instant replaces the earlier). ``at_commit``: every row on its own,
    sent with the COMMIT (``execute_at_commit``)."""
    if at_commit:
        for row in rows:
            execute_at_commit(conn, _UPSERT_MANUAL if row[3] == "manual" else _INSERT_OBSERVATION, row)
        return
    insert_rows(conn, EVIDENCE.name, _STORED, [row for row in rows if row[3] == "observation"])
    for row in rows:
        if row[3] == "manual":
            conn.execute(_UPSERT_MANUAL, row)


@dataclass(frozen=True)
class Folded:
    """A skill's state after new entries, computed from ``state`` under parameters of
    ``parameters_version``, and the evidence rows to insert with it."""

    state: SkillState
    parameters_version: str
    values: dict[str, Any]
    rows: list[tuple]


def fold_entries(conn: Any, writer: FieldSealer, keys: EntryKeys, state: SkillState,
                 params: SkillParameters, fresh: Sequence[NewEntry], fresh_rows: Sequence[tuple],
                 now: str) -> Folded:
    """``fresh`` (and ``fresh_rows``, their ``entry_row``) folded into the skill, not written."""
    trace = fold(conn, writer, state, params, fresh)
    values = state_values(trace, writer, state.profile_id, state.skill, now)
    rows = list(fresh_rows)
    legacy = state.legacy
    if legacy is not None:  # a pre-model value becomes the manual entry it was read as
        entry = manual_entry(legacy, keys.manual(state.profile_id, state.skill, legacy.set_at))
        rows.append(entry_row(writer, state.profile_id, state.skill, entry, now))
    return Folded(state, params.version, values, rows)


def settle(conn: Any, writer: FieldSealer, keys: EntryKeys, profile_id: str, skill: SkillKey, row: Any | None,
           params: SkillParameters, entries: Sequence[NewEntry], rows: Sequence[tuple], now: str) -> Folded:
    """Under the write lock: ``entries`` folded into the skill's state ``row`` (None: a new
    state) as read there, under ``params``."""
    state = state_of(row, writer) if row is not None else SkillState(profile_id, skill, None, None, None)
    return fold_entries(conn, writer, keys, state, params, entries, rows, now)


def write_folded(conn: Any, folded: Sequence[Folded], extra: dict[str, Any] | None = None, *,
                 at_commit: bool = False) -> None:
    """Write each skill's state (with ``extra`` columns) in one statement, then every row in one
    (they need their state first: the foreign key). ``at_commit``: sent with the COMMIT, in
    that order (on a server one round trip for the writes and the COMMIT; a failure is the
    COMMIT's, so only for a write whose statements cannot be refused but by a conflict)."""
    write_states(conn, [(f.state.profile_id, f.state.skill, {**f.values, **(extra or {})}) for f in folded],
                 at_commit=at_commit)
    store_rows(conn, [row for f in folded for row in f.rows], at_commit=at_commit)


def manual_entry(value: ManualValue, entry_key: str) -> NewEntry:
    content: dict[str, Any] = {"mastery_level": value.mastery}
    if value.confidence is not None:
        content["confidence_score"] = value.confidence
    return NewEntry(value, content, entry_key)


def recompute(conn: Any, writer: FieldSealer, state: SkillState, params: SkillParameters,
              now: str) -> dict[str, Any]:
    """The state rebuilt from its evidence under ``params`` (after a refit), written."""
    trace = rebuild(conn, writer, state, params)
    values = state_values(trace, writer, state.profile_id, state.skill, now)
    del values["last_accessed"]  # recomputing is not the learner's activity: retention keeps its clock
    write_state(conn, state.profile_id, state.skill, values)
    return values


def explain(conn: Any, reader: FieldReader, state: SkillState, params: SkillParameters,
            expired_at: datetime | None = None) -> dict[str, Any]:
    """The state's explanation, computed from its evidence under the parameters it was computed
    with. Evidence at or before ``expired_at`` (past its retention window, not purged yet) shows
    as carried over, as the purge will leave it."""
    trace = rebuild(conn, reader, state, params)
    if expired_at is not None:
        trace.purge_before(expired_at + _ONE_MICROSECOND)
    return trace.explain()


def purge_expired(conn: Any, writer: FieldSealer, state: SkillState, params: SkillParameters,
                  cutoff: datetime) -> int:
    """Retention: fold the skill's evidence at or before ``cutoff`` into its carried-over summary
    and delete those rows; returns how many rows went. Mastery, confidence and the checkpoint
    are unchanged (the summary keeps what the purged entries contributed)."""
    trace = rebuild(conn, writer, state, params)
    trace.purge_before(cutoff + _ONE_MICROSECOND)
    carried = KNOWLEDGE.seal(writer, row_id(state.profile_id, state.skill), "carried_over",
                             trace.carried.to_dict() if trace.carried else None)
    conn.execute(f"UPDATE {KNOWLEDGE.name} SET carried_over = ? WHERE {_BY_SKILL}",
                 (carried, state.profile_id, *state.skill))
    return conn.execute(f"DELETE FROM {EVIDENCE.name} WHERE {_BY_SKILL} AND observed_at <= ?",
                        (state.profile_id, *state.skill, to_db(cutoff))).rowcount
