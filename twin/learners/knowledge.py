"""Knowledge states: upsert per (domain, topic), list per profile with an optional domain filter."""

from __future__ import annotations

from typing import Any

from compliance.audit import Actor

from .context import LearnerContext
from .errors import NotFoundError
from .profiles import ProfileService

TABLE = "knowledge_states"


def _row_id(profile_id: str, domain: str, topic: str) -> str:
    # Must equal the registry's row_id_sql for knowledge_states (export decrypts with it).
    return f"{profile_id}/{domain}/{topic}"


class KnowledgeService:
    def __init__(self, ctx: LearnerContext, profiles: ProfileService) -> None:
        self.ctx = ctx
        self.profiles = profiles

    def _view(self, row: Any, sealer: Any) -> dict[str, Any]:
        trajectory = row["learning_trajectory"]
        return {
            "domain": row["knowledge_domain"],
            "topic": row["topic"],
            "mastery_level": row["mastery_level"],
            "confidence_score": row["confidence_score"],
            "learning_trajectory": sealer.open(
                TABLE, "learning_trajectory",
                _row_id(row["profile_id"], row["knowledge_domain"], row["topic"]), trajectory)
            if trajectory is not None else None,
            "prerequisites_met": bool(row["prerequisites_met"]),
            "last_accessed": row["last_accessed"],
        }

    def upsert(self, actor: Actor, request_id: str | None, profile_id: str, domain: str, topic: str,
               data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create or replace one knowledge state; returns (view, created)."""
        ctx = self.ctx
        subject, sealer = self.profiles.subject_and_sealer(profile_id)
        trajectory = data.get("learning_trajectory")
        sealed = None if trajectory is None else \
            sealer.seal(TABLE, "learning_trajectory", _row_id(profile_id, domain, topic), trajectory)

        def write(conn: Any) -> bool:
            self.profiles.require_live(conn, profile_id)  # erased or expired meanwhile?
            existed = conn.execute(
                f"SELECT 1 FROM {TABLE} WHERE profile_id = ? AND knowledge_domain = ? AND topic = ?",
                (profile_id, domain, topic)).fetchone() is not None
            conn.execute(
                f"INSERT INTO {TABLE} (profile_id, knowledge_domain, topic, mastery_level, "
                "confidence_score, last_accessed, learning_trajectory, prerequisites_met) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (profile_id, knowledge_domain, topic) DO UPDATE SET "
                "mastery_level = excluded.mastery_level, confidence_score = excluded.confidence_score, "
                "last_accessed = excluded.last_accessed, learning_trajectory = excluded.learning_trajectory, "
                "prerequisites_met = excluded.prerequisites_met",
                (profile_id, domain, topic, data["mastery_level"], data.get("confidence_score", 0.0),
                 ctx.now(), sealed, bool(data.get("prerequisites_met", False))))
            return not existed

        created = ctx.db.write(write)
        ctx.record(actor, "create" if created else "update", subject,
                   f"profile:{profile_id}/knowledge", request_id)
        row = ctx.db.query_one(f"SELECT * FROM {TABLE} WHERE profile_id = ? AND knowledge_domain = ? "
                               "AND topic = ?", (profile_id, domain, topic))
        return self._view(row, sealer), created

    def list(self, actor: Actor, request_id: str | None, profile_id: str, *, domain: str | None = None,
             subject: str | None = None) -> list[dict[str, Any]]:
        owner = self.profiles.subject_of(profile_id)
        if subject is not None and owner != subject:
            raise NotFoundError("profile not found")
        sql = f"SELECT * FROM {TABLE} WHERE profile_id = :pid AND last_accessed > :knowledge_cutoff"
        params: dict[str, Any] = {"pid": profile_id, **self.ctx.cutoffs()}
        if domain is not None:
            sql += " AND knowledge_domain = :domain"
            params["domain"] = domain
        rows = self.ctx.db.query(sql + " ORDER BY knowledge_domain, topic", params)
        sealer = self.ctx.keys.reader(owner)
        self.ctx.record(actor, "read", owner, f"profile:{profile_id}/knowledge", request_id,
                        {"count": len(rows)})
        return [self._view(r, sealer) for r in rows]
