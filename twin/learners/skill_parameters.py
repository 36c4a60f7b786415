"""Skill parameters as stored: every fitted version of a skill's BKT parameters, and which one
each skill uses now.

A version's row is never updated: a refit inserts a version and moves the skill's pointer
(``skill_parameters_current``), so an explanation computed under an older version can still
name and show it. A skill without a pointer uses the documented defaults
(``twin.learner_model.DEFAULT_PARAMETERS``, version ``default-1``), which are code, not rows.
These are aggregates over many learners (at least ``MIN_LEARNERS``), not personal data.
"""

from __future__ import annotations

from typing import Any, Iterable

from twin.learner_model import DEFAULT_PARAMETERS, FitResult, SkillParameters
from twin.storage import Database

SkillKey = tuple[str, str]  # (domain, topic)

_VALUES = ("prior", "learn", "slip", "guess", "forget")
_CURRENT = (f"SELECT c.knowledge_domain, c.topic, p.version, {', '.join('p.' + v for v in _VALUES)} "
            "FROM skill_parameters_current c JOIN skill_parameters p ON p.knowledge_domain = "
            "c.knowledge_domain AND p.topic = c.topic AND p.version = c.version")


def _parameters(row: Any) -> SkillParameters:
    return SkillParameters(**{v: row[v] for v in _VALUES}, version=row["version"])


class SkillParameterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def current(self, conn: Any, skills: Iterable[SkillKey]) -> dict[SkillKey, SkillParameters]:
        """The parameters each skill uses now (the defaults for a skill never fitted), read on
        ``conn`` (inside the caller's transaction) in one statement."""
        wanted = sorted(set(skills))
        found: dict[SkillKey, SkillParameters] = {}
        for start in range(0, len(wanted), 400):
            chunk = wanted[start:start + 400]
            where = " OR ".join("(c.knowledge_domain = ? AND c.topic = ?)" for _ in chunk)
            for row in conn.execute(f"{_CURRENT} WHERE {where}",
                                    [value for skill in chunk for value in skill]).fetchall():
                found[(row["knowledge_domain"], row["topic"])] = _parameters(row)
        return {skill: found.get(skill, DEFAULT_PARAMETERS) for skill in wanted}

    def version(self, conn: Any, skill: SkillKey, version: str | None) -> SkillParameters:
        """One stored version of a skill's parameters (``None`` or the defaults' version: the
        defaults)."""
        if version is None or version == DEFAULT_PARAMETERS.version:
            return DEFAULT_PARAMETERS
        row = conn.execute(f"SELECT version, {', '.join(_VALUES)} FROM skill_parameters "
                           "WHERE knowledge_domain = ? AND topic = ? AND version = ?",
                           (*skill, version)).fetchone()
        if row is None:  # a state naming a version nobody stored: a bug, or a damaged file
            raise LookupError(f"skill parameters version {version!r} is not stored")
        return _parameters(row)

    def all_current(self) -> list[dict[str, Any]]:
        """Every skill's current fitted version with its fit counts (skills on the defaults
        have none), for operators."""
        rows = self.db.query(
            f"SELECT c.knowledge_domain, c.topic, c.since, p.version, "
            f"{', '.join('p.' + v for v in _VALUES)}, p.learners, p.observations, p.log_likelihood, "
            "p.iterations, p.fitted_at FROM skill_parameters_current c JOIN skill_parameters p "
            "ON p.knowledge_domain = c.knowledge_domain AND p.topic = c.topic AND p.version = c.version "
            "ORDER BY c.knowledge_domain, c.topic")
        return [{"domain": r["knowledge_domain"], "topic": r["topic"], "version": r["version"],
                 **{v: r[v] for v in _VALUES}, "learners": r["learners"],
                 "observations": r["observations"], "log_likelihood": r["log_likelihood"],
                 "iterations": r["iterations"], "fitted_at": r["fitted_at"], "since": r["since"]}
                for r in rows]

    def adopt(self, skill: SkillKey, result: FitResult, now: str) -> bool:
        """Make a fit the skill's current parameters (a fit below the minimum evidence moves
        the skill back to the defaults). True if the skill's current version changed."""
        def write(conn: Any) -> bool:
            row = conn.execute("SELECT version FROM skill_parameters_current WHERE knowledge_domain = ? "
                               "AND topic = ?", skill).fetchone()
            before = row["version"] if row is not None else DEFAULT_PARAMETERS.version
            params = result.parameters
            if not result.fitted:
                conn.execute("DELETE FROM skill_parameters_current WHERE knowledge_domain = ? "
                             "AND topic = ?", skill)
                return before != DEFAULT_PARAMETERS.version
            if before == params.version:
                return False
            conn.execute(
                "INSERT INTO skill_parameters (knowledge_domain, topic, version, prior, learn, slip, "
                "guess, forget, learners, observations, log_likelihood, iterations, fitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (knowledge_domain, topic, version) DO NOTHING",
                (*skill, params.version, *(getattr(params, v) for v in _VALUES), result.learners,
                 result.observations, result.log_likelihood, result.iterations, now))
            conn.execute("INSERT INTO skill_parameters_current (knowledge_domain, topic, version, since) "
                         "VALUES (?, ?, ?, ?) ON CONFLICT (knowledge_domain, topic) DO UPDATE SET "
                         "version = excluded.version, since = excluded.since", (*skill, params.version, now))
            return True

        return self.db.write(write)
