"""Performance metrics: measurements with a name, value and unit, queried by time window."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from twin.storage.timestamps import to_db, utc_now

from .base import SettingsBase
from .errors import SettingsValidationError
from .values import PerformanceMetric, check_key, check_number, check_optional_text, time_param


class PerformanceMetrics(SettingsBase):
    def log_performance_metric(self, name: str, value: float, unit: str | None = None,
                               extra: Any = None, *, recorded_at: datetime | str | None = None) -> int:
        """Record one measurement; returns its id. ``extra`` is any JSON-serialisable value.

        This database is declared free of personal data: never put user IDs or other learner
        data in ``extra`` (counts and endpoints are fine).
        """
        check_key(name, "metric name")
        check_optional_text(unit, "unit")
        try:
            extra_text = None if extra is None else json.dumps(extra, separators=(",", ":"),
                                                               allow_nan=False)
        except (TypeError, ValueError):
            raise SettingsValidationError("metric extra data is not JSON-serialisable") from None
        when = to_db(utc_now()) if recorded_at is None else time_param(recorded_at, "recorded_at")
        params = (name, check_number(value, "metric value"), unit, extra_text, when)
        return self.db.write(lambda conn: conn.execute(
            "INSERT INTO performance_metrics (metric_name, metric_value, metric_unit, "
            "additional_data, recorded_at) VALUES (?, ?, ?, ?, ?) RETURNING id", params).fetchone()[0])

    def performance_metrics(self, name: str | None = None, *, since: datetime | str | None = None,
                            until: datetime | str | None = None, hours: float | None = None,
                            limit: int | None = None) -> list[PerformanceMetric]:
        """Metrics with ``since <= recorded_at < until``, oldest first.

        ``hours`` is the seed's shorthand for ``since = now - hours``; give it or ``since``.
        """
        if hours is not None:
            if since is not None:
                raise SettingsValidationError("give since or hours, not both")
            since = utc_now() - timedelta(hours=check_number(hours, "hours"))
        where, params = [], []
        if name is not None:
            where.append("metric_name = ?")
            params.append(check_key(name, "metric name"))
        if since is not None:
            where.append("recorded_at >= ?")
            params.append(time_param(since, "since"))
        if until is not None:
            where.append("recorded_at < ?")
            params.append(time_param(until, "until"))
        sql = ("SELECT * FROM performance_metrics" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY recorded_at, id")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.db.query(sql, params)
        return [PerformanceMetric(r["id"], r["metric_name"], r["metric_value"], r["metric_unit"],
                                  json.loads(r["additional_data"]) if r["additional_data"] else None,
                                  r["recorded_at"]) for r in rows]

    def purge_performance_metrics(self, before: datetime | str) -> int:
        """Delete metrics recorded before ``before``; returns how many."""
        cutoff = time_param(before, "before")
        return self.db.write(lambda conn: conn.execute(
            "DELETE FROM performance_metrics WHERE recorded_at < ?", (cutoff,)).rowcount)

