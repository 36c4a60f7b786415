"""Skill parameters fitted from every learner's evidence, and the estimates recomputed after.

``fit`` runs EM (``twin.learner_model.fit_skill``) per (domain, topic) over the retained
observations of every live learner, read through the normal unsealing path (each subject's key,
the evidence descriptor) into memory only; what it writes is the fitted version (aggregates).
A skill below the minimum evidence goes back to the documented defaults, so a skill whose
learners were erased or purged stops using parameters they contributed to. ``recompute`` then
rebuilds every knowledge state computed under an older version, in batches (one transaction
each), with progress. Each run records one audit event (skills, learners and observations
counted), not one per subject: no single learner's data leaves the process.

One run at a time across processes (a lease in the vault, ``compliance.job_lock``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from compliance.audit import Actor
from compliance.job_lock import JobLock
from compliance.subject_keys import SubjectKeyMissingError
from twin.learner_model import DEFAULT_PARAMETERS, Observation, fit_skill
from twin.storage import Database
from twin.storage.progress import ProgressFactory, silent

from . import traces
from .context import LearnerContext
from .skill_parameters import SkillKey, SkillParameterStore
from .tables import EVIDENCE, KNOWLEDGE, PROFILES

SYSTEM_ACTOR = Actor("system:model-fit", "system")
RECOMPUTE_BATCH = 200

# Skills with evidence have a knowledge state with a checkpoint (their rows hang off it).
_SKILLS = (f"SELECT DISTINCT knowledge_domain, topic FROM {KNOWLEDGE.name} WHERE model_checkpoint IS NOT NULL "
           "UNION SELECT knowledge_domain, topic FROM skill_parameters_current")
# A skill's observations through its knowledge states (the indexes ingest keeps anyway).
_OBSERVATIONS = (f"SELECT e.profile_id, e.entry_key, e.kind, e.observed_at, e.content, "
                 f"p.{PROFILES.subject_hash_column} AS subject_hash FROM {KNOWLEDGE.name} k "
                 f"JOIN {EVIDENCE.name} e ON e.profile_id = k.profile_id AND e.knowledge_domain = "
                 "k.knowledge_domain AND e.topic = k.topic "
                 f"JOIN {PROFILES.name} p ON p.profile_id = k.profile_id "
                 "WHERE k.knowledge_domain = :domain AND k.topic = :topic AND e.kind = 'observation' "
                 f"AND {EVIDENCE.live_where('e')} AND {PROFILES.live_where('p')} ORDER BY e.profile_id")
# States computed under another version than their skill's current one (no checkpoint: a
# state set before the learner model, which has no evidence to recompute).
_STALE = (f"FROM {KNOWLEDGE.name} k JOIN {PROFILES.name} p ON p.profile_id = k.profile_id "
          "LEFT JOIN skill_parameters_current c ON c.knowledge_domain = k.knowledge_domain AND c.topic = k.topic "
          "WHERE k.model_checkpoint IS NOT NULL AND "
          f"COALESCE(k.parameters_version, '') <> COALESCE(c.version, '{DEFAULT_PARAMETERS.version}')")


@dataclass
class FitReport:
    skills: int = 0
    fitted: int = 0                 # skills with enough evidence to fit
    changed: int = 0                # skills whose current version changed
    learners: int = 0               # distinct learners whose evidence was read
    observations: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelFitting:
    def __init__(self, ctx: LearnerContext, parameters: SkillParameterStore, vault: Database) -> None:
        self.ctx, self.parameters, self.vault = ctx, parameters, vault

    def skills(self) -> list[SkillKey]:
        """Every skill with evidence, or with a fitted version in use."""
        return sorted((r["knowledge_domain"], r["topic"]) for r in self.ctx.db.query(_SKILLS))

    def sequences(self, skill: SkillKey) -> dict[str, list[float]]:
        """Each live learner's retained outcomes on ``skill``, in time order, by profile."""
        ctx = self.ctx
        rows = ctx.db.query(_OBSERVATIONS, {"domain": skill[0], "topic": skill[1], **ctx.cutoffs()})
        by_profile: dict[str, list[Observation]] = defaultdict(list)
        readers: dict[str, Any] = {}
        for row in rows:
            subject = row["subject_hash"]
            try:
                reader = readers.get(subject) or readers.setdefault(subject, ctx.keys.reader(subject))
            except SubjectKeyMissingError:  # erased meanwhile: their rows are going
                continue
            by_profile[row["profile_id"]].append(traces.entry_of(row, reader))  # type: ignore[arg-type]
        return {profile: [o.outcome for o in sorted(observations, key=lambda o: o.sort_key)]
                for profile, observations in by_profile.items()}

    def fit(self, actor: Actor = SYSTEM_ACTOR, *, skills: Iterable[SkillKey] | None = None,
            progress: ProgressFactory = silent, **options: Any) -> FitReport:
        """Fit each skill (default: all) and adopt the results; ``options`` go to ``fit_skill``
        (``min_learners``, ``min_observations``, ``fit_forget``, ...)."""
        chosen = sorted(set(skills)) if skills is not None else self.skills()
        report = FitReport(skills=len(chosen))
        learners: set[str] = set()
        with JobLock(self.vault, "model-fit", self.ctx.clock) as lock, \
                progress("fit skill parameters", len(chosen), "skills") as bar:
            for skill in chosen:
                sequences = self.sequences(skill)
                result = fit_skill(list(sequences.values()), **options)
                changed = self.parameters.adopt(skill, result, self.ctx.now())
                learners.update(sequences)
                report.fitted += result.fitted
                report.changed += changed
                report.observations += result.observations
                report.results.append({"domain": skill[0], "topic": skill[1], "changed": changed,
                                       **result.to_dict()})
                lock.refresh()
                bar.update(1)
        report.learners = len(learners)
        self.ctx.audit.record(actor, "model_fit", resource="skill_parameters", details={
            "skills": report.skills, "fitted": report.fitted, "changed": report.changed,
            "learners": report.learners, "observations": report.observations})
        return report

    def recompute(self, actor: Actor = SYSTEM_ACTOR, *, batch_size: int = RECOMPUTE_BATCH,
                  progress: ProgressFactory = silent) -> dict[str, int]:
        """Rebuild every state computed under another version than its skill's current one,
        ``batch_size`` per transaction. Returns states, skills and learners recomputed."""
        db, now = self.ctx.db, self.ctx.now()
        total = int(db.query_one(f"SELECT count(*) {_STALE}")[0])
        done, after = 0, 0
        skills: set[SkillKey] = set()
        learners: set[str] = set()
        select = (f"SELECT k.id, k.profile_id, k.knowledge_domain, k.topic, k.model_checkpoint, "
                  f"p.{PROFILES.subject_hash_column} AS subject_hash {_STALE} AND k.id > ? ORDER BY k.id LIMIT ?")
        with JobLock(self.vault, "model-fit", self.ctx.clock) as lock, \
                progress("recompute knowledge states", total, "states") as bar:
            while rows := db.query(select, (after, batch_size)):
                after = rows[-1]["id"]
                count = db.write(lambda conn, rows=rows: self._recompute_batch(conn, rows, now))
                done += count
                skills.update((r["knowledge_domain"], r["topic"]) for r in rows)
                learners.update(r["profile_id"] for r in rows)
                lock.refresh()
                bar.update(len(rows))
        counts = {"states": done, "skills": len(skills), "learners": len(learners)}
        self.ctx.audit.record(actor, "model_recompute", resource="knowledge_states", details=counts)
        return counts

    def _recompute_batch(self, conn: Any, rows: list[Any], now: str) -> int:
        current = self.parameters.current(conn, ((r["knowledge_domain"], r["topic"]) for r in rows))
        done = 0
        for row in rows:
            skill = (row["knowledge_domain"], row["topic"])
            try:
                writer = self.ctx.keys.writer(row["subject_hash"], proof=traces.proof_of(row))
            except SubjectKeyMissingError:  # erased meanwhile
                continue
            state = traces.load_state(conn, writer, row["profile_id"], skill)  # as it is now
            if state.row is None or state.parameters_version == current[skill].version:
                continue
            traces.recompute(conn, writer, state, current[skill], now)
            done += 1
        return done
