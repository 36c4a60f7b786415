"""Import legacy JSON files (settings/config, business goals) into the settings store.

Accepted settings/config JSON shapes
------------------------------------
1. Structured: an object with a ``"configurations"`` and/or ``"app_settings"`` member.

   - ``"configurations"`` is either an object ``{key: value}`` or ``{key: {"value": ...,
     "category": ..., "description": ..., "sensitive": bool}}`` (``is_sensitive`` is accepted
     for ``sensitive``), or a list of ``{"key": ..., "value": ..., ...}`` objects (the form of
     an export of the seed's ``configurations`` table).
   - ``"app_settings"`` is an object ``{key: value}`` or ``{key: {"value": ..., "description":
     ...}}``; values keep their JSON type (bool, int, float, str, object, array).

2. Flat: any other object ``{key: value}``; every member becomes a configuration in category
   ``general``.

Configuration values are strings. Other JSON values are converted: ``true``/``false`` to
``"true"``/``"false"``, numbers, objects and arrays to their compact JSON text; ``null`` is
skipped (counted under ``skipped``). A configuration is sensitive when it says so; when it
does not say (flat form, or no flag), when its key looks like a secret (contains ``secret``,
``token`` (not ``tokens``), ``password``, ``passwd``, ``api_key``/``apikey``,
``private_key`` or ``credential``, any case).

Accepted business-goals JSON shapes
-----------------------------------
A list of goal objects; or ``{"business_goals": [...]}`` / ``{"goals": [...]}``; or an object
``{goal_id: goal}``. A goal without ``id`` gets one from the mapping key, else a stable one
from its title (``goal-<sha256(title)[:12]>``), so re-imports match the same row. Fields
without a column are kept under ``metadata``; a priority word (``critical``, ``high``,
``medium``, ``low``) maps to 5, 4, 3, 2.

Idempotency: the store's writes are no-ops when nothing changes, so importing the same files
twice reports everything ``unchanged`` the second time and adds no row and no audit entry.
Everything is validated before anything is written, and all writes happen in one
transaction: an import lands completely or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from twin.storage import Backend, FileBacked, backup_database, write_manifest
from twin.storage.progress import ProgressFactory, silent

from .errors import LegacyImportError, SettingsError
from .goals import FIELDS as GOAL_FIELDS
from .goals import normalize_goal
from .store import SettingsStore
from .values import ChangeOutcome, check_key, encode_setting

LOG_FORMAT = "learner-twin-settings-migration-log/1"
KINDS = ("configurations", "app_settings", "business_goals")
# "token" but not "tokens": max_tokens is a limit, slack_bot_token a secret.
_SECRET_NAME = re.compile(r"secret|token(?!s)|passw(or)?d|api_?key|private_?key|credential",
                          re.IGNORECASE)
_PRIORITY_WORDS = {"critical": 5, "high": 4, "medium": 3, "low": 2}


@dataclass(frozen=True, repr=False)
class ConfigInput:
    key: str
    value: str
    category: str = "general"
    description: str | None = None
    sensitive: bool = False

    def __repr__(self) -> str:  # the value may be a secret
        return f"ConfigInput(key={self.key!r}, category={self.category!r}, sensitive={self.sensitive})"


@dataclass(frozen=True)
class AppSettingInput:
    key: str
    value: Any
    description: str | None = None


@dataclass
class LegacyData:
    """Everything parsed from the legacy files, validated, ready to write."""

    configurations: list[ConfigInput] = field(default_factory=list)
    app_settings: list[AppSettingInput] = field(default_factory=list)
    business_goals: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})


# -- reading and parsing --------------------------------------------------------------------

def load_json(path: Path) -> Any:
    """Parse a JSON file; ``LegacyImportError`` with a one-line reason otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise LegacyImportError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise LegacyImportError(f"{path} is not valid JSON ({exc})") from None


def looks_secret(key: str) -> bool:
    """True for key names that conventionally hold secrets."""
    return bool(_SECRET_NAME.search(key))


def _config_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _config_input(where: str, key: Any, spec: Any) -> ConfigInput | None:
    try:
        check_key(key)
    except SettingsError as exc:
        raise LegacyImportError(f"{where}: {exc}") from None
    meta: Mapping[str, Any] = spec if isinstance(spec, Mapping) and "value" in spec else {"value": spec}
    unknown = set(meta) - {"key", "value", "category", "description", "sensitive", "is_sensitive"}
    if unknown:
        raise LegacyImportError(f"{where}: unknown fields {sorted(unknown)}")
    if meta["value"] is None:
        return None
    category = meta.get("category") or "general"
    description = meta.get("description")
    flag = meta.get("sensitive", meta.get("is_sensitive"))
    if flag is not None and not isinstance(flag, bool) and flag not in (0, 1):
        raise LegacyImportError(f"{where}: sensitive must be true or false")
    if not isinstance(category, str) or (description is not None and not isinstance(description, str)):
        raise LegacyImportError(f"{where}: category and description must be strings")
    sensitive = looks_secret(key) if flag is None else bool(flag)
    return ConfigInput(key, _config_text(meta["value"]), category, description, sensitive)


def _entries(where: str, section: Any) -> list[tuple[str, Any, Any]]:
    """``(location, key, spec)`` triples of an object section or a list-of-objects section."""
    if isinstance(section, Mapping):
        return [(f"{where}.{k}", k, v) for k, v in section.items()]
    if isinstance(section, list):
        out = []
        for i, item in enumerate(section):
            if not isinstance(item, Mapping) or "key" not in item:
                raise LegacyImportError(f"{where}[{i}]: expected an object with a 'key'")
            out.append((f"{where}[{i}]", item["key"], item))
        return out
    raise LegacyImportError(f"{where}: expected an object or a list")


def parse_settings_document(doc: Any, data: LegacyData | None = None) -> LegacyData:
    """Validate a settings/config document (shapes in the module docstring)."""
    data = data or LegacyData()
    if not isinstance(doc, Mapping):
        raise LegacyImportError("settings JSON must be an object")
    structured = "configurations" in doc or "app_settings" in doc
    if structured:
        unknown = set(doc) - {"configurations", "app_settings"}
        if unknown:
            raise LegacyImportError(f"settings JSON: unknown top-level members {sorted(unknown)}")
    config_section = doc.get("configurations", {}) if structured else doc
    for where, key, spec in _entries("configurations", config_section):
        item = _config_input(where, key, spec)
        if item is None:
            data.skipped["configurations"].append(key)
        else:
            data.configurations.append(item)
    for where, key, spec in _entries("app_settings", doc.get("app_settings", {}) if structured else {}):
        meta = spec if isinstance(spec, Mapping) and "value" in spec and set(spec) <= {
            "key", "value", "description"} else {"value": spec}
        try:
            check_key(key)
            encode_setting(meta["value"])
        except SettingsError as exc:
            raise LegacyImportError(f"{where}: {exc}") from None
        data.app_settings.append(AppSettingInput(key, meta["value"], meta.get("description")))
    for kind, items in (("configurations", data.configurations), ("app_settings", data.app_settings)):
        keys = [i.key for i in items]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise LegacyImportError(f"{kind}: duplicate keys {duplicates}")
    return data


def _goal_items(doc: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(doc, Mapping):
        for member in ("business_goals", "goals"):
            if member in doc and len(doc) == 1:
                return _goal_items(doc[member])
        return [(f"goals.{k}", k, v) for k, v in doc.items()]
    if isinstance(doc, list):
        return [(f"goals[{i}]", None, v) for i, v in enumerate(doc)]
    raise LegacyImportError("business-goals JSON must be a list or an object")


def parse_goals_document(doc: Any, data: LegacyData | None = None) -> LegacyData:
    """Validate a business-goals document (shapes in the module docstring)."""
    data = data or LegacyData()
    seen: set[str] = set()
    for where, mapping_key, raw in _goal_items(doc):
        if not isinstance(raw, Mapping):
            raise LegacyImportError(f"{where}: a goal must be an object")
        goal = {k: v for k, v in raw.items() if k in GOAL_FIELDS}
        extra = {k: v for k, v in raw.items() if k not in GOAL_FIELDS}
        if extra:
            goal["metadata"] = {**extra, **(goal.get("metadata") or {})}
        if "id" not in goal:
            title = raw.get("title")
            goal["id"] = mapping_key if mapping_key is not None else (
                "goal-" + hashlib.sha256(str(title).encode()).hexdigest()[:12])
        if isinstance(goal.get("priority"), str):
            goal["priority"] = _PRIORITY_WORDS.get(goal["priority"].lower(), goal["priority"])
        try:
            normalized = normalize_goal(goal)
        except SettingsError as exc:
            raise LegacyImportError(f"{where}: {exc}") from None
        if normalized["id"] in seen:
            raise LegacyImportError(f"{where}: duplicate goal id {normalized['id']!r}")
        seen.add(normalized["id"])
        data.business_goals.append(normalized)
    return data


# -- writing ------------------------------------------------------------------------------------

class _DryRun(Exception):
    """Raised at the end of a dry run to roll the whole import back."""


def import_legacy(store: SettingsStore, data: LegacyData, *, dry_run: bool = False,
                  changed_by: str | None = None,
                  progress: ProgressFactory = silent) -> dict[str, dict[str, list[str]]]:
    """Write parsed legacy data in one transaction; ``{kind: {outcome: [keys]}}``.

    ``dry_run`` performs every write and then rolls back, so the outcomes are exactly those a
    real run would have.
    """
    result = {kind: {"created": [], "updated": [], "unchanged": [], "skipped": list(data.skipped[kind])}
              for kind in KINDS}
    writers: list[tuple[str, str, Callable[[], ChangeOutcome]]] = []
    for c in data.configurations:
        writers.append(("configurations", c.key, lambda c=c: store.set_config(
            c.key, c.value, c.category, c.description, c.sensitive, changed_by)))
    for s in data.app_settings:
        writers.append(("app_settings", s.key, lambda s=s: store.set_app_setting(
            s.key, s.value, s.description, changed_by)))
    for g in data.business_goals:
        writers.append(("business_goals", g["id"], lambda g=g: store.save_business_goal(g)))
    try:
        with store.db.transaction(), progress("import legacy settings", len(writers), "items") as bar:
            for kind, key, write in writers:
                result[kind][write().value].append(key)
                bar.update(1)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return result


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _write_json_private(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _source(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise LegacyImportError(f"cannot read {path}: {exc.strerror}") from None
    return {"path": str(Path(path).resolve()), "sha256": digest}


# A PostgreSQL database is backed up by the server's tools; the import itself is one transaction.
SERVER_BACKUP = "the settings store is on postgresql: back its schema up with pg_dump --schema=settings"


def default_paths(db: Backend, data_dir: Path | None = None) -> tuple[Path, Path]:
    """``(backup_dir, log_file)`` for a run now: ``<data dir>/backups/settings-migration-<ts>/``
    and ``<data dir>/migration_logs/settings-migration-<ts>.json`` (the data directory is the
    settings file's, or ``data_dir`` for a database on a server)."""
    stamp = _timestamp()
    base = db.path.parent if isinstance(db, FileBacked) else Path(data_dir or ".")
    return (base / "backups" / f"settings-migration-{stamp}",
            base / "migration_logs" / f"settings-migration-{stamp}.json")


def run_migration(store: SettingsStore, *, settings_json: Path | None = None,
                  goals_json: Path | None = None, log_file: Path | None = None,
                  backup_dir: Path | None = None, dry_run: bool = False,
                  progress: ProgressFactory = silent, data_dir: Path | None = None) -> dict[str, Any]:
    """The whole legacy migration: parse, back up ``settings.db``, import, write the JSON log.

    On PostgreSQL no backup is taken here (``backup_skipped`` in the log says to pg_dump the
    schema first) and the log goes under ``data_dir``.

    Returns the log document. On failure the log is still written (``status: failed``) and
    the error re-raised; the database is left as it was (the import is one transaction).
    A dry run takes no backup and changes nothing, but logs what a real run would do.
    """
    if settings_json is None and goals_json is None:
        raise LegacyImportError("nothing to import: give a settings JSON and/or a goals JSON")
    default_backup, default_log = default_paths(store.db, data_dir)
    on_file = isinstance(store.db, FileBacked)
    log_file = Path(log_file) if log_file else default_log
    doc: dict[str, Any] = {
        "format": LOG_FORMAT, "status": "running", "dry_run": dry_run,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": {"name": store.db.name,
                     "path": str(store.db.path) if on_file else store.db.display_url},
        "sources": {}, "backup": None, "counts": None, "keys": None, "error": None,
    }
    try:
        doc["sources"] = {"settings_json": _source(settings_json), "goals_json": _source(goals_json)}
        data = LegacyData()
        if settings_json is not None:
            parse_settings_document(load_json(Path(settings_json)), data)
        if goals_json is not None:
            parse_goals_document(load_json(Path(goals_json)), data)
        if not dry_run and not on_file:
            doc["backup_skipped"] = SERVER_BACKUP
        elif not dry_run:
            target = Path(backup_dir) if backup_dir else default_backup
            entry = backup_database(store.db, target, progress=progress)
            manifest = write_manifest(target, [entry])
            doc["backup"] = {"directory": str(target.resolve()), "file": entry.file,
                             "sha256": entry.sha256, "manifest": str(manifest.resolve()),
                             "schema_version": entry.schema_version}
        outcome = import_legacy(store, data, dry_run=dry_run, progress=progress)
        doc["keys"] = outcome
        doc["counts"] = {kind: {k: len(v) for k, v in by_outcome.items()}
                         for kind, by_outcome in outcome.items()}
        doc["status"] = "ok"
    except Exception as exc:
        doc["status"] = "failed"
        doc["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        doc["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        doc["log_file"] = str(log_file.resolve())
        _write_json_private(log_file, doc)
    return doc
