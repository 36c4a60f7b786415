"""``ModelManager``: the seed's model registry on the storage core, with checksummed files.

    >>> manager = ModelManager()               # the configured registry, as the seed
    >>> manager = ModelManager(open_database("model_registry", config, keyring.database_keys), model_dir)
    >>> record = manager.save_model("resource_predictor", onnx_bytes, model_type="ensemble")
    >>> record["version"]                      # "1", then "2", ... (see twin.model_registry.naming)
    >>> manager.load_model("resource_predictor")   # the active version's bytes

Security: bytes are stored and returned as they are; any other object is pickled, as the seed
did, and its format is recorded with the version. Unpickling runs arbitrary code, so loading
a pickled version needs ``load_model(..., allow_pickle=True)`` and verifies the SHA-256 first
(see ``twin.model_registry.formats``). Prefer formats that carry no code (ONNX, safetensors,
JSON weights) saved as bytes.

Every public method returns JSON-serialisable dicts and lists (timestamps ISO-8601 UTC), so
the REST layer can return them as they are. Files are named after a slug of the model name
and version plus a random part, written atomically with mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from twin.storage import Backend, FileBacked
from twin.storage.pipeline import execute_at_commit
from twin.storage.timestamps import to_db, utc_now

from .errors import DuplicateVersionError, InvalidModelFieldError, ModelFileMissingError, \
    ModelNotFoundError
from .blobs import ModelBlobStore
from .files import ModelFileStore
from .formats import check_allowed, deserialise, serialise
from .naming import model_file_name, next_version, validate_name, validate_version
from .history import VersionHistory, metrics_view
from .performance import json_text

if TYPE_CHECKING:
    from compliance.keyring import Keyring
    from twin.config import Config

Record = dict[str, Any]
MAX_MODEL_TYPE_LENGTH = 64


@dataclass(frozen=True)
class _Descriptive:
    model_type: str | None
    algorithms_json: str
    metadata_json: str


def _descriptive(model_type: Any, algorithms: Any, metadata: Any) -> _Descriptive:
    if model_type is not None and (not isinstance(model_type, str) or not model_type.strip()
                                   or len(model_type) > MAX_MODEL_TYPE_LENGTH):
        raise InvalidModelFieldError(
            f"model_type must be a non-empty string of at most {MAX_MODEL_TYPE_LENGTH} characters")
    algorithms = [] if algorithms is None else algorithms
    if not isinstance(algorithms, (list, tuple)) or not all(isinstance(a, str) for a in algorithms):
        raise InvalidModelFieldError("algorithms must be a list of strings")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise InvalidModelFieldError(f"metadata must be a dict, got {type(metadata).__name__}")
    return _Descriptive(model_type, json_text(list(algorithms), "algorithms"),
                        json_text(dict(metadata), "metadata"))


def _versions_lock(name: str) -> str:
    """Held by every writer that claims a version or moves the active one of ``name``: on
    PostgreSQL two replicas claiming "the next version" at once would otherwise both read the
    same versions and one fail on the unique (name, version) instead of taking the next."""
    return f"model-registry:{name}"


class ModelManager(VersionHistory):
    """Model versions, the active version per name, metrics history and training records
    (``history.VersionHistory``)."""

    def __init__(self, db: Backend | None = None, model_dir: str | Path | None = None) -> None:
        """The seed's ``ModelManager()``: without ``db``, the configured registry (the catalog's
        ``model_registry`` database and ``TWIN_MODEL_DIR``, from the environment).

        A given ``db`` must be migrated to ``twin.model_registry.schema.MIGRATIONS``;
        ``model_dir`` (default ``models/`` beside the database) is created with mode 0700.
        """
        if db is None:
            from twin.catalog import open_model_registry

            db, model_dir = open_model_registry(model_dir=model_dir)
        self.db = db
        # On PostgreSQL the bytes live in the database, so every replica loads what any saved.
        self.files: ModelFileStore | ModelBlobStore = (
            ModelFileStore(model_dir if model_dir is not None else db.path.parent / "models")
            if isinstance(db, FileBacked) else ModelBlobStore(db))

    @classmethod
    def open(cls, config: "Config | None" = None, keyring: "Keyring | None" = None,
             model_dir: str | Path | None = None) -> "ModelManager":
        """The catalog's ``model_registry`` database, migrated, with the configured model
        directory, through the catalog (``twin.catalog.open_model_manager``)."""
        from twin.catalog import open_model_registry

        return cls(*open_model_registry(config, keyring, model_dir))

    # -- saving ---------------------------------------------------------------------------

    def save_model(self, name: str, model: Any, version: str | None = None,
                   model_type: str | None = None, algorithms: Sequence[str] | None = None,
                   metadata: Mapping[str, Any] | None = None, activate: bool = True) -> Record:
        """Store a new version and register it; return its record.

        ``model``: bytes are stored as they are (format ``bytes``); any other object is
        pickled (format ``pickle``, loaded only with ``allow_pickle=True``). Without
        ``version`` the next one is derived (``"1"``, ``"2"``, ``"1.0.0"`` -> ``"1.0.1"``).
        ``activate`` makes it the name's active version. Raises ``InvalidModelNameError``,
        ``InvalidVersionError``, ``DuplicateVersionError``.
        """
        name = validate_name(name)
        if version is not None:
            validate_version(version)
        fields = _descriptive(model_type, algorithms, metadata)
        data, model_format = serialise(model)
        # Written before taking the write lock: a large model must not block other writers.
        staged = self.files.stage(data)
        published: list[Path] = []

        def register(conn: Any) -> str:
            claimed = self._claim_version(conn, name, version)
            file_name = model_file_name(name, claimed[0])
            model_id = self._insert(conn, name, claimed, fields, activate,
                                    file_name, staged.sha256, staged.size, model_format)
            published.append(self.files.publish(staged, file_name))
            return model_id

        try:
            model_id = self.db.write(register, lock=_versions_lock(name))
        except BaseException:
            self.files.discard(staged.path, *published)
            raise
        self.files.discard(staged.path)
        return self._record_by_id(model_id, new=True)

    def register_model(self, name: str, version: str | None = None, model_type: str | None = None,
                       algorithms: Sequence[str] | None = None,
                       metadata: Mapping[str, Any] | None = None, activate: bool = False) -> Record:
        """Register a version without a stored file (the artefact lives elsewhere).

        It takes part in versioning, activation, metrics and training history like any
        other; ``load_model`` on it raises ``ModelFileMissingError``.
        """
        name = validate_name(name)
        if version is not None:
            validate_version(version)
        fields = _descriptive(model_type, algorithms, metadata)
        model_id = self.db.write(lambda conn: self._insert(
            conn, name, self._claim_version(conn, name, version), fields, activate, None, None, None),
            lock=_versions_lock(name))
        return self._record_by_id(model_id, new=True)

    @staticmethod
    def _claim_version(conn: Any, name: str, version: str | None) -> tuple[str, int]:
        """The version to save (``version``, else the next one) and its ``seq``: one read."""
        rows = conn.execute("SELECT version, seq FROM model_registry WHERE name = ?", (name,)).fetchall()
        existing = [row["version"] for row in rows]
        seq = max((row["seq"] for row in rows), default=0) + 1
        if version is None:
            return next_version(existing), seq
        if version in existing:
            raise DuplicateVersionError(f"model {name!r} already has version {version!r}")
        return version, seq

    @staticmethod
    def _insert(conn: Any, name: str, claimed: tuple[str, int], fields: _Descriptive, activate: bool,
                file_name: str | None, sha256: str | None, size: int | None,
                model_format: str = "bytes") -> str:
        # Both writes go with the COMMIT on PostgreSQL (no round trip of their own); a
        # failure fails the write as it would here.
        now = to_db(utc_now())
        model_id = f"mdl_{secrets.token_hex(10)}"
        version, seq = claimed
        if activate:
            execute_at_commit(conn, "UPDATE model_registry SET is_active = 0, updated_at = ? "
                              "WHERE name = ? AND is_active = 1", (now, name))
        execute_at_commit(
            conn,
            "INSERT INTO model_registry (model_id, name, version, seq, model_type, algorithms, "
            "metadata, is_active, file_name, checksum_sha256, size_bytes, format, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (model_id, name, version, seq, fields.model_type, fields.algorithms_json,
             fields.metadata_json, int(bool(activate)), file_name, sha256, size, model_format,
             now, now))
        return model_id

    # -- the active version and loading ---------------------------------------------------

    def set_active(self, name: str, version: str) -> Record:
        """Make ``version`` the only active version of ``name``; return its record."""
        name, version = validate_name(name), validate_version(version)
        now = to_db(utc_now())
        def activate(conn: Any) -> str:
            row = self._row(conn, name, version)
            if not row["is_active"]:
                conn.execute("UPDATE model_registry SET is_active = 0, updated_at = ? "
                             "WHERE name = ? AND is_active = 1", (now, name))
                conn.execute("UPDATE model_registry SET is_active = 1, updated_at = ? "
                             "WHERE model_id = ?", (now, row["model_id"]))
            return row["model_id"]
        return self._record_by_id(self.db.write(activate, lock=_versions_lock(name)))

    def get_active(self, name: str) -> Record | None:
        """The active version's record, or None when ``name`` has no active version."""
        name = validate_name(name)
        row = self.db.query_one("SELECT * FROM model_registry WHERE name = ? AND is_active = 1",
                                (name,))
        return None if row is None else self._record(self.db.connection(), row)

    def load_model(self, name: str, version: str | None = None, *, allow_pickle: bool = False) -> Any:
        """``version`` (default: the active version) as saved: its bytes, or, for a pickled
        version and only with ``allow_pickle=True``, the unpickled object.

        Raises ``ChecksumMismatchError`` if the file changed since it was saved (checked before
        unpickling), ``PickleNotAllowedError`` for a pickle without ``allow_pickle``,
        ``ModelFileMissingError`` if there is no file, ``ModelNotFoundError``.
        """
        name = validate_name(name)
        row = self._row(self.db.connection(), name, version)
        what = f"model {name!r} version {row['version']!r}"
        if row["file_name"] is None:
            raise ModelFileMissingError(f"{what} was registered without a file")
        check_allowed(row["format"], allow_pickle=allow_pickle, what=what)
        return deserialise(self.files.read(row["file_name"], row["checksum_sha256"]), row["format"])

    def _row(self, conn: Any, name: str, version: str | None) -> Any:
        if version is None:
            row = conn.execute("SELECT * FROM model_registry WHERE name = ? AND is_active = 1",
                               (name,)).fetchone()
            if row is None:
                self._require_model(conn, name)
                raise ModelNotFoundError(f"model {name!r} has no active version")
            return row
        validate_version(version)
        row = conn.execute("SELECT * FROM model_registry WHERE name = ? AND version = ?",
                           (name, version)).fetchone()
        if row is None:
            self._require_model(conn, name)
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return row

    @staticmethod
    def _require_model(conn: Any, name: str) -> None:
        if conn.execute("SELECT 1 FROM model_registry WHERE name = ?", (name,)).fetchone() is None:
            raise ModelNotFoundError(f"no model named {name!r}")

    # -- information ----------------------------------------------------------------------

    def get_model_info(self, name: str | None = None) -> Record:
        """A summary of one model (``name``) or ``{"models": [summary, ...]}`` of all.

        A summary: ``name, version_count, versions`` (in save order), ``latest_version``
        (last saved), ``active_version``, ``active`` (its record or None), ``created_at``,
        ``updated_at``.
        """
        with self.db.transaction(immediate=False) as conn:
            if name is not None:
                name = validate_name(name)
                rows = conn.execute("SELECT * FROM model_registry WHERE name = ? ORDER BY seq",
                                    (name,)).fetchall()
                if not rows:
                    raise ModelNotFoundError(f"no model named {name!r}")
                return self._summary(conn, rows)
            rows = conn.execute("SELECT * FROM model_registry ORDER BY name, seq").fetchall()
            by_name: dict[str, list[Any]] = {}
            for row in rows:
                by_name.setdefault(row["name"], []).append(row)
            return {"models": [self._summary(conn, group) for group in by_name.values()]}

    def _summary(self, conn: Any, rows: list[Any]) -> Record:
        active = next((row for row in rows if row["is_active"]), None)
        return {
            "name": rows[0]["name"],
            "version_count": len(rows),
            "versions": [row["version"] for row in rows],
            "latest_version": rows[-1]["version"],
            "active_version": None if active is None else active["version"],
            "active": None if active is None else self._record(conn, active),
            "created_at": min(row["created_at"] for row in rows),
            "updated_at": max(row["updated_at"] for row in rows),
        }

    def get_versions(self, name: str) -> list[Record]:
        """Every version's record of ``name``, in the order they were saved."""
        name = validate_name(name)
        with self.db.transaction(immediate=False) as conn:
            rows = conn.execute("SELECT * FROM model_registry WHERE name = ? ORDER BY seq",
                                (name,)).fetchall()
            if not rows:
                raise ModelNotFoundError(f"no model named {name!r}")
            return [self._record(conn, row) for row in rows]

    def _record_by_id(self, model_id: str, *, new: bool = False) -> Record:
        """``new``: a version this call just saved, under an id made for it, so no
        performance can have been recorded for it yet (one read fewer)."""
        conn = self.db.connection()
        row = conn.execute("SELECT * FROM model_registry WHERE model_id = ?",
                           (model_id,)).fetchone()
        return self._record(conn, row, new=new)

    def _record(self, conn: Any, row: Any, *, new: bool = False) -> Record:
        latest = None if new else conn.execute(
            "SELECT p.*, ? AS name, ? AS version FROM performance_metrics p WHERE p.model_id = ? "
            "ORDER BY p.recorded_at DESC, p.id DESC LIMIT 1",
            (row["name"], row["version"], row["model_id"])).fetchone()
        return {
            "model_id": row["model_id"],
            "name": row["name"],
            "version": row["version"],
            "model_type": row["model_type"],
            "algorithms": json.loads(row["algorithms"]),
            "metadata": json.loads(row["metadata"]),
            "is_active": bool(row["is_active"]),
            "has_file": row["file_name"] is not None,
            "format": row["format"] if row["file_name"] is not None else None,
            "checksum_sha256": row["checksum_sha256"],
            "size_bytes": row["size_bytes"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "latest_performance": None if latest is None else metrics_view(latest),
        }

    # -- cleanup --------------------------------------------------------------------------

    def cleanup_old_models(self, keep: int = 3, name: str | None = None) -> Record:
        """Delete all but the ``keep`` most recently saved versions of each model (or of
        ``name``), with their files, metrics and training history. The active version is
        never deleted, even when it is older.

        Returns ``{"keep", "removed": [{"name", "version", "model_id"}], "files_deleted"}``.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise InvalidModelFieldError("keep must be an integer of at least 1")
        if name is not None:
            name = validate_name(name)
        def delete_old(conn: Any) -> list[Any]:
            where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
            rows = conn.execute(f"SELECT model_id, name, version, is_active, file_name, seq "
                                f"FROM model_registry {where} ORDER BY name, seq DESC",
                                params).fetchall()
            seen: dict[str, int] = {}
            doomed = []
            for row in rows:
                rank = seen[row["name"]] = seen.get(row["name"], 0) + 1
                if rank > keep and not row["is_active"]:
                    doomed.append(row)
            conn.executemany("DELETE FROM model_registry WHERE model_id = ?",
                             [(row["model_id"],) for row in doomed])
            return doomed

        doomed = self.db.write(delete_old)
        # Files (blobs) go after the commit: a crash in between leaves an unreferenced file,
        # never a registered version without its file.
        files_deleted = sum(self.files.delete(row["file_name"]) for row in doomed
                            if row["file_name"] is not None)
        removed = sorted(doomed, key=lambda row: (row["name"], row["seq"]))
        return {"keep": keep, "files_deleted": files_deleted,
                "removed": [{"name": row["name"], "version": row["version"],
                             "model_id": row["model_id"]} for row in removed]}
