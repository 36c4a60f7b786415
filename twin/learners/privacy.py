"""The learner domain as the provider of its personal data (``compliance.providers``).

DSR export, erasure and retention reach the learner tables only through this provider, which
reads them through their descriptors (``tables.py``): the export decodes a row exactly as the
services' views do. A learner table added later is exported and erased once its descriptor is
in ``tables.LEARNER_TABLES``; what its export needs beyond its columns goes here:

- each exported knowledge state carries its explanation (GDPR art. 15(1)(h): meaningful
  information about the logic involved), computed from the evidence in the export's snapshot;
- expired evidence is not simply deleted: each skill's expired observations are folded into its
  carried-over summary first (``traces.purge_expired``), so the estimate, its confidence and the
  explanation's first step survive the purge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from compliance.personal_data import PersonalTable
from compliance.providers import TableProvider
from compliance.subject_keys import SubjectKeyMissingError, SubjectKeyStore
from twin.storage import Database
from twin.storage.timestamps import from_db, to_db

from . import traces
from .skill_parameters import SkillParameterStore
from .tables import EVIDENCE, KNOWLEDGE, PROFILES

Explain = Callable[[Any, Any, traces.SkillState], dict[str, Any]]

# The knowledge states (and subjects) of a batch of expired evidence rows.
_EXPIRED_SKILLS = (f"SELECT k.{', k.'.join(traces.STATE_COLUMNS)}, p.{PROFILES.subject_hash_column} AS subject_hash "
                   f"FROM {KNOWLEDGE.name} k JOIN {PROFILES.name} p ON p.profile_id = k.profile_id "
                   f"WHERE (k.profile_id, k.knowledge_domain, k.topic) IN (SELECT profile_id, knowledge_domain, "
                   f"topic FROM {EVIDENCE.name} WHERE id IN ")


class LearnerDataProvider(TableProvider):
    """``digital_twin``'s learner tables (the registry's declarations for that database)."""

    def __init__(self, db: Database, tables: Sequence[PersonalTable], *, keys: SubjectKeyStore,
                 parameters: SkillParameterStore, explain: Explain) -> None:
        super().__init__(db, tables)
        self.keys, self.parameters, self.explain = keys, parameters, explain

    def export_rows(self, conn: Any, table: PersonalTable, rows: Sequence[Any],
                    reader: Any) -> list[dict[str, Any]]:
        out = super().export_rows(conn, table, rows, reader)
        if table is KNOWLEDGE:
            for row, exported in zip(rows, out):
                exported["explanation"] = self.explain(conn, reader, traces.state_of(row, reader))
        return out

    def purge_expired(self, table: PersonalTable, expired_ids_sql: str, params: dict[str, Any]) -> int:
        if table is not EVIDENCE:
            return super().purge_expired(table, expired_ids_sql, params)
        cutoff = from_db(params[f"{EVIDENCE.retention.window}_cutoff"])  # type: ignore[union-attr]

        def work(conn: Any) -> int:
            skills = conn.execute(f"{_EXPIRED_SKILLS} ({expired_ids_sql} LIMIT :batch))", params).fetchall()
            return sum(self._purge_skill(conn, row, cutoff) for row in skills)

        return self.db.write(work)

    def _purge_skill(self, conn: Any, row: Any, cutoff: datetime) -> int:
        """One skill's expired evidence folded into its summary and deleted."""
        try:
            writer = self.keys.writer(row["subject_hash"], proof=traces.proof_of(row))
        except SubjectKeyMissingError:  # their key is gone (ending mid-way): nothing to summarise
            return conn.execute(f"DELETE FROM {EVIDENCE.name} WHERE profile_id = ? AND knowledge_domain = ? "
                                "AND topic = ? AND observed_at <= ?",
                                (row["profile_id"], row["knowledge_domain"], row["topic"],
                                 to_db(cutoff))).rowcount
        state = traces.state_of(row, writer)
        params = self.parameters.version(conn, state.skill, state.parameters_version)
        return traces.purge_expired(conn, writer, state, params, cutoff)
