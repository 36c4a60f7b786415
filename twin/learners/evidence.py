"""Evidence: batches of observations folded into the learner's knowledge states, and their list.

A batch is all or nothing, in one transaction: every observation is checked first (a 422 names
each failing one by index and field), an evidence id already stored (or earlier in the batch)
with the same content is a repeat, with other content a conflict naming the ids; then each
touched skill folds its new observations in (``traces``: for in-order evidence one read of the
touched states and one write of them, whatever the history) and the rows are inserted, item ids,
outcomes and ids sealed under the subject's key. Repeats are found by keyed hashes of the evidence
ids, without unsealing; only a repeat's stored content is opened, to compare it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from compliance.audit import Actor
from twin.learner_model import BeforeRetainedWindowError, InvalidObservationError, Observation
from twin.storage.timestamps import from_db

from . import traces
from .context import LearnerContext
from .cursors import decode_cursor, encode_cursor
from .errors import EvidenceConflictError, InvalidFieldsError
from .profiles import ProfileService
from .sessions import CLOCK_SKEW
from .skill_parameters import SkillParameterStore
from .tables import EVIDENCE

MAX_BATCH = 1000
_OUTCOMES = ("correct", "score")
_LOOKUP_CHUNK = 500   # keyed hashes per statement, well below any engine's parameter limit
_STORED = f"SELECT entry_key, knowledge_domain, topic, observed_at, content, profile_id FROM {EVIDENCE.name} "
_LIST = (f"SELECT id, profile_id, entry_key, knowledge_domain, topic, observed_at, content, recorded_at "
         f"FROM {EVIDENCE.name} WHERE profile_id = :pid AND kind = 'observation' AND id > :after AND "
         f"{EVIDENCE.live_where()}")


@dataclass(frozen=True)
class _Item:
    """One observation of a batch: the model's view, its skill, and the sealed content."""

    index: int
    observation: Observation
    skill: traces.SkillKey
    content: dict[str, Any]

    @property
    def evidence_id(self) -> str:
        return self.observation.evidence_id

    def same_as(self, skill: traces.SkillKey, observed_at: datetime, content: Mapping[str, Any]) -> bool:
        return (self.skill == skill and self.observation.observed_at == observed_at
                and self.content == dict(content))


def _content(data: Mapping[str, Any]) -> dict[str, Any]:
    content = {"evidence_id": data["evidence_id"], "item_id": data["item_id"]}
    for name in (*_OUTCOMES, "session_id"):
        if data.get(name) is not None:
            content[name] = data[name]
    return content


def view(row: Any, content: Mapping[str, Any]) -> dict[str, Any]:
    """An observation as the API shows it."""
    item = {"evidence_id": content["evidence_id"], "domain": row["knowledge_domain"], "topic": row["topic"],
            "item_id": content["item_id"]}
    for name in (*_OUTCOMES, "session_id"):
        if name in content:
            item[name] = content[name]
    item["observed_at"] = row["observed_at"]
    item["recorded_at"] = row["recorded_at"]
    return item


class EvidenceService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService, parameters: SkillParameterStore,
                 keys: traces.EntryKeys) -> None:
        self.ctx, self.profiles, self.parameters, self.keys = ctx, profiles, parameters, keys

    # -- ingest ---------------------------------------------------------------------------

    def _items(self, observations: Sequence[Mapping[str, Any]]) -> list[_Item]:
        """The batch as the model sees it; InvalidFieldsError naming every refused observation
        (checks beyond the request schema: the model's own, time in the future, before the
        evidence retention window)."""
        now = self.ctx.clock()
        window = self.ctx.config.evidence_retention_days
        oldest, newest = now - timedelta(days=window), now + CLOCK_SKEW
        errors: dict[int, dict[str, list[str]]] = {}
        rules: list[str] = []
        items = []
        if not 0 < len(observations) <= MAX_BATCH:
            raise InvalidFieldsError({"observations": [f"Give 1 to {MAX_BATCH} observations."]})
        for index, data in enumerate(observations):
            try:
                observation = Observation.from_dict(data, index)
            except InvalidObservationError as exc:
                errors[index] = {exc.field or "_schema": [str(exc)]}
                continue
            if observation.observed_at > newest:
                errors[index] = {"observed_at": ["Must not be in the future."]}
                rules.append("time-in-the-future")
            elif observation.observed_at <= oldest:
                errors[index] = {"observed_at": [f"Must be within the last {window} days (evidence retention)."]}
                rules.append("observed-at-outside-retention")
            else:
                items.append(_Item(index, observation, (data["domain"], data["topic"]), _content(data)))
        if errors:  # the problem type names the first observation's rule; errors name them all
            raise InvalidFieldsError({"observations": errors}, rule=rules[0] if rules else None)
        return items

    def ingest(self, actor: Actor, request_id: str | None, profile_id: str,
               observations: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Fold a batch of observations into the profile's knowledge states: ``{new, repeats}``."""
        ctx = self.ctx
        items = self._items(observations)
        fresh, repeats, conflicts = self._distinct(items)
        now = ctx.now()
        keys = {item.evidence_id: self.keys.observation(profile_id, item.evidence_id) for item in fresh}

        # The rest is done under the write lock, on the writers' connection, whose pages the
        # last write left cached: the profile's read (its key's proof; live, held), the rows
        # sealed, each skill folded from its state read there. Before the lock, the profile and
        # the states were read through this thread's connection, whose page cache every write of
        # the process empties (their pages read and decrypted again each batch): 12,459k ->
        # 9,941k instructions per batch of 10, for some sealing and folding now held under it.
        # Only the checks and the keyed hashes come first: bad fields are 422 before an unknown
        # profile's 404, as before.

        def write(conn: Any) -> tuple[int, int, str]:
            subject_hash, proof = self.profiles.key_proof(profile_id, conn, hold=True)
            writer = ctx.keys.writer(subject_hash, proof=proof)
            keyed: dict[str, tuple[_Item, traces.NewEntry, tuple]] = {}
            for item in fresh:
                key = keys[item.evidence_id]
                entry = traces.NewEntry(item.observation, item.content, key, item.index)
                keyed[key] = (item, entry, traces.entry_row(writer, profile_id, item.skill, entry, now))
            stored = self._repeats_and_conflicts(conn, writer, profile_id, keyed)
            if conflicts or stored[1]:
                clash = sorted(conflicts + stored[1], key=lambda i: i.index)
                raise EvidenceConflictError(sorted({i.evidence_id for i in clash}), [i.index for i in clash])
            by_skill = self._by_skill(keyed, stored[0])
            current = self.parameters.current(conn, by_skill)
            rows = traces.state_rows(conn, profile_id, list(by_skill), for_update=ctx.db.dialect.for_update)
            ready = []
            try:
                for skill, (entries, entry_rows) in by_skill.items():
                    ready.append(traces.settle(conn, writer, self.keys, profile_id, skill, rows[skill],
                                               current[skill], entries, entry_rows, now))
            except BeforeRetainedWindowError as exc:
                raise InvalidFieldsError({"observations": {exc.index: {"observed_at": [
                    "Older than evidence already purged by retention: it cannot be folded in."]}}},
                    rule="observed-before-purged-evidence") from None
            traces.write_folded(conn, ready)
            return len(keyed) - len(stored[0]), repeats + len(stored[0]), subject_hash

        # Shared with concurrent requests' writes on a file (``LearnerContext.write``); on a
        # server each batch queues for the learner's writers lock on its own.
        added, repeated, subject_hash = ctx.write(write, lock=traces.writers_lock(profile_id))
        ctx.record(actor, "create", subject_hash, f"profile:{profile_id}/evidence", request_id,
                   {"new": added, "repeats": repeated})
        return {"new": added, "repeats": repeated}

    @staticmethod
    def _by_skill(keyed: Mapping[str, tuple[_Item, traces.NewEntry, tuple]],
                  stored: set[str]) -> dict[traces.SkillKey, tuple[list[traces.NewEntry], list[tuple]]]:
        """The new entries and their rows per skill, in batch order (those not ``stored``)."""
        by_skill: dict[traces.SkillKey, tuple[list[traces.NewEntry], list[tuple]]] = defaultdict(lambda: ([], []))
        for key, (item, entry, row) in keyed.items():
            if key not in stored:
                by_skill[item.skill][0].append(entry)
                by_skill[item.skill][1].append(row)
        return by_skill

    @staticmethod
    def _distinct(items: list[_Item]) -> tuple[list[_Item], int, list[_Item]]:
        """The batch's first occurrence of each evidence id, how many later ones repeat it, and
        those that reuse it with other content."""
        first: dict[str, _Item] = {}
        repeats, conflicts = 0, []
        for item in items:
            seen = first.get(item.evidence_id)
            if seen is None:
                first[item.evidence_id] = item
            elif seen.same_as(item.skill, item.observation.observed_at, item.content):
                repeats += 1
            else:
                conflicts.append(item)
        return list(first.values()), repeats, conflicts

    @staticmethod
    def _repeats_and_conflicts(conn: Any, reader: Any, profile_id: str,
                               keyed: Mapping[str, tuple[_Item, Any, Any]]) -> tuple[set[str], list[_Item]]:
        """Keys of the batch already stored with the same content, and the items whose id is
        stored with other content."""
        same: set[str] = set()
        clash: list[_Item] = []
        keys = list(keyed)
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            rows = conn.execute(_STORED + f"WHERE profile_id = ? AND entry_key IN "
                                          f"({', '.join('?' for _ in chunk)})", (profile_id, *chunk)).fetchall()
            for row in rows:
                item = keyed[row["entry_key"]][0]
                content = EVIDENCE.decode(row, reader, ("content",))["content"]
                skill = (row["knowledge_domain"], row["topic"])
                if item.same_as(skill, from_db(row["observed_at"]), content):
                    same.add(row["entry_key"])
                else:
                    clash.append(item)
        return same, clash

    # -- reading --------------------------------------------------------------------------

    def list(self, actor: Actor, request_id: str | None, profile_id: str, *, limit: int,
             cursor: str | None = None, domain: str | None = None, topic: str | None = None,
             restricted_to: str | None = None) -> dict[str, Any]:
        """``{items, next_cursor}``: the profile's unexpired observations in the order they
        were stored, of one domain and/or topic if named."""
        ctx = self.ctx
        subject_hash = self.profiles.subject_of(profile_id)
        ctx.require_own(restricted_to, subject_hash)
        sql, params = _LIST, {"pid": profile_id, "after": decode_cursor(cursor) if cursor else 0,
                              "limit": limit + 1, **ctx.cutoffs()}
        for column, value in (("knowledge_domain", domain), ("topic", topic)):
            if value is not None:
                sql += f" AND {column} = :{column}"
                params[column] = value
        rows = ctx.db.query(sql + " ORDER BY id LIMIT :limit", params)
        more = len(rows) > limit
        rows = rows[:limit]
        reader = ctx.keys.reader(subject_hash) if rows else None
        items = [view(r, EVIDENCE.decode(r, reader, ("content",))["content"]) for r in rows]
        ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/evidence", request_id,
                   {"count": len(items)})
        return {"items": items, "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}

