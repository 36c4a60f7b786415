"""Business goals: the fields a goal has, their validation, and row <-> dict mapping.

A goal is a plain dict, as in the seed's usage examples::

    {"id": "sales_q1_2025", "title": "Q1 Sales Target", "area": "sales",
     "status": "in_progress", "priority": 4, "progress": 40,
     "weekly_actions": ["Follow up with leads"], "success_metrics": {"revenue": "$50000"}}
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from twin.storage.timestamps import to_db, utc_now

from .base import SettingsBase
from .errors import SettingsValidationError
from .values import ChangeOutcome, check_key, check_optional_text

STATUSES = ("not_started", "planned", "in_progress", "on_hold", "completed", "cancelled")
FIELDS = ("id", "title", "description", "area", "status", "priority", "progress",
          "weekly_actions", "success_metrics", "target_date", "metadata")
# Stored columns in FIELDS order; the JSON ones are (de)serialised on the way.
_JSON_FIELDS = ("weekly_actions", "success_metrics", "metadata")


def normalize_goal(goal: Mapping[str, Any]) -> dict[str, Any]:
    """A complete, validated goal (defaults filled in); ``SettingsValidationError`` otherwise."""
    if not isinstance(goal, Mapping):
        raise SettingsValidationError("a business goal is a JSON object")
    unknown = set(goal) - set(FIELDS) - {"created_at", "updated_at"}
    if unknown:
        raise SettingsValidationError(
            f"unknown business-goal fields {sorted(unknown)} (put extra data under 'metadata')")
    out: dict[str, Any] = {"id": check_key(goal.get("id"), "goal id")}
    title = goal.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 500:
        raise SettingsValidationError("goal title must be a non-empty string (at most 500 characters)")
    out["title"] = title
    for name in ("description", "area", "target_date"):
        out[name] = check_optional_text(goal.get(name), f"goal {name}")
    status = goal.get("status", "not_started")
    if status not in STATUSES:
        raise SettingsValidationError(f"goal status must be one of {list(STATUSES)}")
    out["status"] = status
    priority = goal.get("priority", 3)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
        raise SettingsValidationError("goal priority must be an integer from 1 to 5")
    out["priority"] = priority
    progress = goal.get("progress", 0)
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
        raise SettingsValidationError("goal progress must be a percentage from 0 to 100")
    out["progress"] = float(progress)
    actions = goal.get("weekly_actions", [])
    if not isinstance(actions, list):
        raise SettingsValidationError("goal weekly_actions must be a list")
    out["weekly_actions"] = actions
    for name in ("success_metrics", "metadata"):
        value = goal.get(name, {})
        if not isinstance(value, dict):
            raise SettingsValidationError(f"goal {name} must be an object")
        out[name] = value
    for name in _JSON_FIELDS:
        try:
            json.dumps(out[name], allow_nan=False)
        except (TypeError, ValueError):
            raise SettingsValidationError(f"goal {name} is not JSON-serialisable") from None
    return out


def goal_params(goal: dict[str, Any]) -> tuple[Any, ...]:
    """SQL parameters of a normalized goal, in ``FIELDS`` order."""
    return tuple(json.dumps(goal[f], separators=(",", ":"), sort_keys=True) if f in _JSON_FIELDS
                 else goal[f] for f in FIELDS)


def goal_from_row(row: Any) -> dict[str, Any]:
    goal = {f: json.loads(row[f]) if f in _JSON_FIELDS else row[f] for f in FIELDS}
    goal["created_at"], goal["updated_at"] = row["created_at"], row["updated_at"]
    return goal


class BusinessGoals(SettingsBase):
    def save_business_goal(self, goal: Mapping[str, Any]) -> ChangeOutcome:
        """Create or replace a goal by its ``id`` (see ``goals.normalize_goal`` for fields)."""
        params = goal_params(normalize_goal(goal))
        columns = ", ".join(FIELDS)

        def write(conn: Any) -> ChangeOutcome:
            row = conn.execute(f"SELECT {columns} FROM business_goals WHERE id = ?",
                               (params[0],)).fetchone()
            if row is not None and tuple(row) == params:
                return ChangeOutcome.UNCHANGED
            now = to_db(utc_now())
            if row is None:
                conn.execute(f"INSERT INTO business_goals ({columns}, created_at, updated_at) "
                             f"VALUES ({', '.join('?' for _ in FIELDS)}, ?, ?)",
                             (*params, now, now))
                return ChangeOutcome.CREATED
            assignments = ", ".join(f"{f} = ?" for f in FIELDS[1:])
            conn.execute(f"UPDATE business_goals SET {assignments}, updated_at = ? WHERE id = ?",
                         (*params[1:], now, params[0]))
            return ChangeOutcome.UPDATED

        return self.db.write(write)

    def get_business_goal(self, goal_id: str) -> dict[str, Any] | None:
        """One goal by id, or None."""
        row = self.db.query_one("SELECT * FROM business_goals WHERE id = ?",
                                (check_key(goal_id, "goal id"),))
        return None if row is None else goal_from_row(row)

    def get_business_goals(self, status: str | None = None,
                           area: str | None = None) -> list[dict[str, Any]]:
        """Goals, highest priority first, optionally filtered by status and/or area."""
        where, params = [], []
        for column, value in (("status", status), ("area", area)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM business_goals" + (" WHERE " + " AND ".join(where) if where else "")
        return [goal_from_row(r) for r in self.db.query(sql + " ORDER BY priority DESC, id", params)]

    def delete_business_goal(self, goal_id: str) -> bool:
        """Delete a goal; False if there was none."""
        check_key(goal_id, "goal id")
        return bool(self.db.write(lambda conn: conn.execute(
            "DELETE FROM business_goals WHERE id = ?", (goal_id,)).rowcount))

