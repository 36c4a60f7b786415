"""Knowledge states: upsert per (domain, topic), list per profile with an optional domain filter."""

from __future__ import annotations

from typing import Any

from compliance.audit import Actor

from .context import LearnerContext
from .profiles import ProfileService
from .tables import KNOWLEDGE

_KEY = ("profile_id", "knowledge_domain", "topic")
_UPSERT = KNOWLEDGE.upsert_sql((*_KEY, "mastery_level", "confidence_score", "last_accessed",
                                "learning_trajectory", "prerequisites_met"), _KEY)
_SELECT = f"SELECT {KNOWLEDGE.select_list()} FROM {KNOWLEDGE.name} WHERE "
_BY_KEY = "profile_id = :profile_id AND knowledge_domain = :domain AND topic = :topic"


class KnowledgeService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService) -> None:
        self.ctx = ctx
        self.profiles = profiles

    @staticmethod
    def _view(row: Any, reader: Any) -> dict[str, Any]:
        decoded = KNOWLEDGE.decode(row, reader, ("knowledge_domain", "topic", "mastery_level",
                                                 "confidence_score", "learning_trajectory",
                                                 "prerequisites_met", "last_accessed"))
        return {
            "domain": decoded["knowledge_domain"],
            "topic": decoded["topic"],
            "mastery_level": decoded["mastery_level"],
            "confidence_score": decoded["confidence_score"],
            "learning_trajectory": decoded["learning_trajectory"],
            "prerequisites_met": bool(decoded["prerequisites_met"]),
            "last_accessed": decoded["last_accessed"],
        }

    def upsert(self, actor: Actor, request_id: str | None, profile_id: str, domain: str, topic: str,
               data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace one knowledge state; returns (view, created)."""
        ctx = self.ctx
        subject_hash, proof = self.profiles.key_proof(profile_id)
        writer = ctx.keys.writer(subject_hash, proof=proof)
        row_id = KNOWLEDGE.row_id_of({"profile_id": profile_id, "knowledge_domain": domain, "topic": topic})
        sealed = KNOWLEDGE.seal(writer, row_id, "learning_trajectory", data.get("learning_trajectory"))
        key = {"profile_id": profile_id, "domain": domain, "topic": topic}

        def write(conn: Any) -> bool:
            self.profiles.require_live(conn, profile_id)  # erased or expired meanwhile?
            existed = conn.execute(f"SELECT 1 FROM {KNOWLEDGE.name} WHERE {_BY_KEY}", key).fetchone() is not None
            conn.execute(_UPSERT, (profile_id, domain, topic, data["mastery_level"],
                                   data.get("confidence_score", 0.0), ctx.now(), sealed,
                                   bool(data.get("prerequisites_met", False))))
            return not existed

        created = ctx.db.write(write)
        ctx.record(actor, "create" if created else "update", subject_hash,
                   f"profile:{profile_id}/knowledge", request_id)
        row = ctx.db.query_one(_SELECT + _BY_KEY, key)
        return self._view(row, writer), created

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
