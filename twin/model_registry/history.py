"""What happened to a model version over time: its performance measurements and its training
runs, two histories kept the one same way (a row per event, keyed by the version's model id,
listed for one version or every version of a name)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from twin.storage import Backend
from twin.storage.timestamps import to_db, utc_now

from .errors import InvalidModelFieldError
from .naming import validate_name
from .performance import METRIC_COLUMNS, ModelPerformance, json_text, metrics_record, to_timestamp

Record = dict[str, Any]


def metrics_view(row: Any) -> Record:
    """A performance measurement as returned (``row`` carries the version's name and version)."""
    record: Record = {"id": row["id"], "model_id": row["model_id"], "name": row["name"],
                      "version": row["version"], "recorded_at": row["recorded_at"]}
    record.update({column: row[column] for column in METRIC_COLUMNS})
    record["extra"] = json.loads(row["extra_metrics"])
    return record


def _training_view(row: Any) -> Record:
    return {"id": row["id"], "model_id": row["model_id"], "name": row["name"],
            "version": row["version"], "training_started": row["training_started"],
            "training_completed": row["training_completed"], "dataset_size": row["dataset_size"],
            "hyperparameters": json.loads(row["hyperparameters"]),
            "validation_score": row["validation_score"], "recorded_at": row["recorded_at"]}


@dataclass(frozen=True)
class History:
    """One kind of version history: its table (alias in queries), order and returned form."""

    table: str
    alias: str
    order_by: str
    view: Callable[[Any], Record]


PERFORMANCE = History("performance_metrics", "p", "p.recorded_at, p.id", metrics_view)
TRAINING = History("training_history", "t", "t.id", _training_view)


def _optional_number(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidModelFieldError(f"{field} must be a finite number")
    return float(value)


class VersionHistory:
    """The histories of ``ModelManager``'s versions (it provides ``db``, ``_row`` and
    ``_require_model``)."""

    db: Backend
    _row: Callable[..., Any]
    _require_model: Callable[..., None]

    # -- performance ----------------------------------------------------------------------

    def update_performance(self, name: str, version: str | None,
                           performance: ModelPerformance | Mapping[str, Any]) -> Record:
        """Append a metrics measurement to a version's history (``None``: the active one)."""
        name = validate_name(name)
        record = metrics_record(performance)
        return self._append(PERFORMANCE, name, version, (*METRIC_COLUMNS, "extra_metrics", "recorded_at"),
                            (*record.columns.values(), json.dumps(record.extra), record.recorded_at))

    def get_performance(self, name: str, version: str | None = None) -> list[Record]:
        """Metrics history, oldest first: of one version, or of every version of ``name``."""
        return self._list(PERFORMANCE, name, version)

    # -- training -------------------------------------------------------------------------

    def save_training_history(self, name: str, version: str | None = None, *,
                              training_started: Any = None, training_completed: Any = None,
                              dataset_size: int | None = None,
                              hyperparameters: Mapping[str, Any] | None = None,
                              validation_score: float | None = None) -> Record:
        """Record one training run of a version (``None``: the active one); return it.

        Times are datetimes (naive = UTC) or ISO-8601 strings.
        """
        name = validate_name(name)
        started = to_timestamp(training_started, "training_started")
        completed = to_timestamp(training_completed, "training_completed")
        if started and completed and completed < started:
            raise InvalidModelFieldError("training_completed is before training_started")
        if dataset_size is not None and (isinstance(dataset_size, bool)
                                         or not isinstance(dataset_size, int) or dataset_size < 0):
            raise InvalidModelFieldError("dataset_size must be a non-negative integer")
        hyperparameters = {} if hyperparameters is None else hyperparameters
        if not isinstance(hyperparameters, Mapping):
            raise InvalidModelFieldError("hyperparameters must be a dict")
        hyper_json = json_text(dict(hyperparameters), "hyperparameters")
        score = _optional_number("validation_score", validation_score)
        return self._append(TRAINING, name, version,
                            ("training_started", "training_completed", "dataset_size",
                             "hyperparameters", "validation_score", "recorded_at"),
                            (started, completed, dataset_size, hyper_json, score, to_db(utc_now())))

    def get_training_history(self, name: str, version: str | None = None) -> list[Record]:
        """Training runs, oldest first: of one version, or of every version of ``name``."""
        return self._list(TRAINING, name, version)

    # -- the one mechanism ----------------------------------------------------------------

    def _append(self, history: History, name: str, version: str | None, columns: Sequence[str],
                values: Sequence[Any]) -> Record:
        def append(conn: Any) -> int:
            row = self._row(conn, name, version)
            return conn.execute(
                f"INSERT INTO {history.table} (model_id, {', '.join(columns)}) "
                f"VALUES (?, {', '.join('?' for _ in columns)}) RETURNING id",
                (row["model_id"], *values)).fetchone()[0]
        entry_id = self.db.write(append)
        return self._select(history, f"{history.alias}.id = ?", (entry_id,))[0]

    def _list(self, history: History, name: str, version: str | None) -> list[Record]:
        name = validate_name(name)
        conn = self.db.connection()
        if version is None:
            self._require_model(conn, name)
            return self._select(history, "m.name = ?", (name,))
        row = self._row(conn, name, version)
        return self._select(history, f"{history.alias}.model_id = ?", (row["model_id"],))

    def _select(self, history: History, where: str, params: tuple[Any, ...]) -> list[Record]:
        a = history.alias
        rows = self.db.query(
            f"SELECT {a}.*, m.name, m.version FROM {history.table} {a} "
            f"JOIN model_registry m ON m.model_id = {a}.model_id WHERE {where} "
            f"ORDER BY {history.order_by}", params)
        return [history.view(row) for row in rows]
