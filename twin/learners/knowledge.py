"""Knowledge states: a manual value per (domain, topic), the list per profile, each state's
explanation, and the topics due for review.

A state's mastery is the learner model's estimate (``traces``): evidence moves it
(``evidence.py``), and a PUT sets it by hand, as a manual value the evidence after it continues
from. The explanation is computed from the sealed evidence on every request, never stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from compliance.audit import Actor
from twin.learner_model import ManualValue, due_reviews
from twin.learner_model.review import card_from_dict
from twin.storage.timestamps import to_db

from . import traces
from .context import LearnerContext
from .errors import NotFoundError
from .profiles import ProfileService
from .skill_parameters import SkillParameterStore
from .tables import KNOWLEDGE

_SELECT = f"SELECT {KNOWLEDGE.select_list()} FROM {KNOWLEDGE.name} WHERE "
_BY_KEY = "profile_id = :profile_id AND knowledge_domain = :domain AND topic = :topic"
_VIEW = ("knowledge_domain", "topic", "mastery_level", "confidence_score", "source", "parameters_version",
         "review_due", "learning_trajectory", "prerequisites_met", "last_accessed")
_STATE = f"SELECT {', '.join(traces.STATE_COLUMNS)} FROM {KNOWLEDGE.name} WHERE "
_DUE = (f"{_STATE} profile_id = :profile_id AND review_due IS NOT NULL AND review_due <= :before "
        f"AND {KNOWLEDGE.live_where()}")


class KnowledgeService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService, parameters: SkillParameterStore,
                 keys: traces.EntryKeys) -> None:
        self.ctx, self.profiles, self.parameters, self.keys = ctx, profiles, parameters, keys

    @staticmethod
    def _view(row: Any, reader: Any) -> dict[str, Any]:
        return KnowledgeService._render(KNOWLEDGE.decode(row, reader, _VIEW))

    @staticmethod
    def _render(decoded: dict[str, Any]) -> dict[str, Any]:
        """A state as the API shows it, from its ``_VIEW`` columns' values (decoded)."""
        return {
            "domain": decoded["knowledge_domain"],
            "topic": decoded["topic"],
            "mastery_level": decoded["mastery_level"],
            "confidence_score": decoded["confidence_score"],
            "source": decoded["source"],
            "parameters_version": decoded["parameters_version"],
            "review_due": decoded["review_due"],
            "learning_trajectory": decoded["learning_trajectory"],
            "prerequisites_met": bool(decoded["prerequisites_met"]),
            "last_accessed": decoded["last_accessed"],
        }

    def upsert(self, actor: Actor, request_id: str | None, profile_id: str, domain: str, topic: str,
               data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Set a state's mastery by hand (a manual value now); returns (view, created). Without
        ``confidence_score`` the confidence is the model's track record on the learner."""
        ctx = self.ctx
        skill = (domain, topic)
        set_at = ctx.clock()
        now = to_db(set_at)
        entry = traces.manual_entry(ManualValue(set_at, data["mastery_level"], data.get("confidence_score")),
                                    self.keys.manual(profile_id, skill, set_at))
        trajectory = data.get("learning_trajectory")
        prerequisites_met = bool(data.get("prerequisites_met", False))

        # Everything is done under the write lock, on the writers' connection, whose pages the
        # last write left cached: the profile's read (its key's proof, and that it is still
        # live, held) outside it went through a connection whose cache every write of the
        # process empties, about four pages read and decrypted again per PUT. The state is
        # folded there too (``settle``): one manual value's fold is a checkpoint opened, a little
        # arithmetic and a seal, less than a read transaction of its own folding it ahead.
        def write(conn: Any) -> tuple[traces.Folded, bool, str]:
            subject_hash, proof = self.profiles.key_proof(profile_id, conn, hold=True)
            writer = ctx.keys.writer(subject_hash, proof=proof)
            rows = [traces.entry_row(writer, profile_id, skill, entry, now)]
            extra = {"learning_trajectory": KNOWLEDGE.seal(writer, traces.row_id(profile_id, skill),
                                                           "learning_trajectory", trajectory),
                     "prerequisites_met": prerequisites_met}
            state_row = traces.state_rows(conn, profile_id, [skill], for_update=ctx.db.dialect.for_update)[skill]
            params = self.parameters.current(conn, [skill])[skill]
            folded = traces.settle(conn, writer, self.keys, profile_id, skill, state_row, params,
                                   [entry], rows, now)
            # Sent with the COMMIT (a server: one round trip for the three): nothing in them can
            # be refused but by a conflict, which re-runs the write (the value is checked, the
            # profile row held, the evidence row an upsert).
            traces.write_folded(conn, [folded], extra, at_commit=True)
            return folded, state_row is None, subject_hash

        folded, created, subject_hash = ctx.write(write, lock=traces.writers_lock(profile_id))
        ctx.record(actor, "create" if created else "update", subject_hash,
                   f"profile:{profile_id}/knowledge", request_id)
        # The state this PUT wrote, from the values it wrote (every column of the view is one of
        # them): not read back and its trajectory not opened again.
        return self._render({**folded.values, "knowledge_domain": domain, "topic": topic,
                             "learning_trajectory": trajectory,
                             "prerequisites_met": prerequisites_met}), created

    def list(self, actor: Actor, request_id: str | None, profile_id: str, *, domain: str | None = None,
             restricted_to: str | None = None) -> list[dict[str, Any]]:
        subject_hash = self.profiles.subject_of(profile_id)
        self.ctx.require_own(restricted_to, subject_hash)
        sql = _SELECT + f"profile_id = :profile_id AND {KNOWLEDGE.live_where()}"
        params: dict[str, Any] = {"profile_id": profile_id, **self.ctx.cutoffs()}
        if domain is not None:
            sql += " AND knowledge_domain = :domain"
            params["domain"] = domain
        rows = self.ctx.db.query(sql + " ORDER BY knowledge_domain, topic", params)
        reader = self.ctx.keys.reader(subject_hash)
        self.ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/knowledge", request_id,
                        {"count": len(rows)})
        return [self._view(r, reader) for r in rows]

    def explanation(self, actor: Actor, request_id: str | None, profile_id: str, domain: str, topic: str,
                    *, restricted_to: str | None = None) -> dict[str, Any]:
        """Why the state's mastery is what it is: the steps that moved it, from its evidence."""
        ctx = self.ctx
        subject_hash = self.profiles.subject_of(profile_id)
        ctx.require_own(restricted_to, subject_hash)
        reader = ctx.keys.reader(subject_hash)
        with ctx.db.transaction(immediate=False) as conn:  # the state and its evidence, one snapshot
            row = conn.execute(_STATE + _BY_KEY + f" AND {KNOWLEDGE.live_where()}",
                               {"profile_id": profile_id, "domain": domain, "topic": topic,
                                **ctx.cutoffs()}).fetchone()
            if row is None:
                raise NotFoundError("knowledge state not found")
            explanation = self.explain_state(conn, reader, traces.state_of(row, reader))
        ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/knowledge/explanation", request_id,
                   {"steps": len(explanation["steps"])})
        return explanation

    def explain_state(self, conn: Any, reader: Any, state: traces.SkillState) -> dict[str, Any]:
        """A state's explanation under the parameters it was computed with; evidence past its
        retention window (not purged yet) shows as carried over, as the purge will leave it."""
        params = self.parameters.version(conn, state.skill, state.parameters_version)
        expired_at = self.ctx.clock() - timedelta(days=self.ctx.config.evidence_retention_days)
        return traces.explain(conn, reader, state, params, expired_at)

    def reviews_due(self, actor: Actor, request_id: str | None, profile_id: str,
                    before: datetime | None = None, *, restricted_to: str | None = None) -> list[dict[str, Any]]:
        """Topics FSRS says are due at or before ``before`` (default now), soonest first, with
        the predicted recall then."""
        ctx = self.ctx
        subject_hash = self.profiles.subject_of(profile_id)
        ctx.require_own(restricted_to, subject_hash)
        before = before or ctx.clock()
        rows = ctx.db.query(_DUE, {"profile_id": profile_id, "before": to_db(before), **ctx.cutoffs()})
        reader = ctx.keys.reader(subject_hash) if rows else None
        cards = {}
        for row in rows:
            checkpoint = traces.state_of(row, reader).checkpoint
            if checkpoint is not None:
                cards[(row["knowledge_domain"], row["topic"])] = card_from_dict(checkpoint.review_card)
        due = [d.to_dict() for d in due_reviews(cards, before)]
        ctx.record(actor, "read", subject_hash, f"profile:{profile_id}/reviews", request_id, {"count": len(due)})
        return due
