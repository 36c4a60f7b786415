#!/usr/bin/env python3
"""Import legacy JSON files (settings/config, business goals) into settings.db.

  python scripts/data_migration.py --settings-json config.json --goals-json business_goals.json
  python scripts/data_migration.py --settings-json config.json --dry-run

Before writing, settings.db is backed up (encrypted copy + manifest, default
<data dir>/backups/settings-migration-<UTC time>/). Every run writes a JSON log of what it
did (created/updated/unchanged/skipped per kind, the backup's location), default
<data dir>/migration_logs/settings-migration-<UTC time>.json. Running it twice on the same
files changes nothing the second time. The accepted JSON shapes are documented in
twin/settings_store/legacy_import.py. Exit 0 on success, 2 on an error (one line on stderr).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin import scripting  # noqa: E402
from twin.catalog import open_database  # noqa: E402
from twin.settings_store import SettingsError, SettingsStore  # noqa: E402
from twin.settings_store.legacy_import import run_migration  # noqa: E402


def build_parser():
    p = scripting.parser("Import legacy settings/config and business-goals JSON files into "
                         "settings.db (idempotent; backs up first; writes a JSON log).")
    p.add_argument("--settings-json", type=Path, metavar="FILE",
                   help="settings/config JSON: {\"configurations\": {...}, \"app_settings\": {...}} "
                        "or flat {key: value}")
    p.add_argument("--goals-json", type=Path, metavar="FILE",
                   help="business goals JSON: a list of goals, {\"business_goals\": [...]} "
                        "or {id: goal}")
    p.add_argument("--log-file", type=Path, metavar="FILE",
                   help="where to write the JSON log (default <data dir>/migration_logs/...)")
    p.add_argument("--backup-dir", type=Path, metavar="DIR",
                   help="where to back up settings.db first (default <data dir>/backups/...)")
    p.add_argument("--dry-run", action="store_true",
                   help="report what would change (in the log and on stdout); write nothing, no backup")
    p.add_argument("--actor", default="script:data_migration",
                   help="recorded as changed_by in the configuration audit trail")
    return p


def main(args) -> int:
    if args.settings_json is None and args.goals_json is None:
        raise scripting.ScriptError("nothing to import: give --settings-json and/or --goals-json")
    config, keyring = scripting.load_config_and_keyring()
    db = open_database("settings", config, keyring)
    try:
        store = SettingsStore.from_keyring(db, keyring, actor=args.actor)
        doc = run_migration(store, settings_json=args.settings_json, goals_json=args.goals_json,
                            log_file=args.log_file, backup_dir=args.backup_dir, dry_run=args.dry_run)
    except SettingsError as exc:
        raise scripting.ScriptError(str(exc)) from None
    except scripting.ScriptError:
        raise
    except Exception as exc:  # e.g. a driver error mid-import: still one line, the log has it too
        raise scripting.ScriptError(f"{type(exc).__name__}: {exc}") from None
    finally:
        db.close_all()
    prefix = "dry run, nothing written: " if args.dry_run else ""
    for kind, counts in doc["counts"].items():
        print(f"{prefix}{kind:<15} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    if doc["backup"]:
        print(f"backup: {doc['backup']['directory']}")
    print(f"log: {doc['log_file']}")
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
