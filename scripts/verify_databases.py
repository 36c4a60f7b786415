#!/usr/bin/env python3
"""Verify the live databases (decryptable, integrity_check, schema up to date) and, with
--backup-check, a backup set (checksums + integrity). Exit 0 healthy, 1 problems found.

  python scripts/verify_databases.py [--database NAME]
  python scripts/verify_databases.py --backup-check [DIR]      # default: newest set in backups/
"""

import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import sqlcipher3  # noqa: E402

from twin import scripting  # noqa: E402
from twin.catalog import database_path, migrator_for, open_database, spec_for  # noqa: E402
from twin.storage import BackupVerificationError, Database, read_manifest, verify_backup_entry  # noqa: E402
from twin.storage.errors import StorageError  # noqa: E402


def build_parser():
    p = scripting.parser("Verify live databases and backup sets.")
    scripting.add_database_option(p)
    p.add_argument("--backup-check", nargs="?", const="latest", metavar="DIR",
                   help="verify a backup set (default: the newest under backups/)")
    return p


def check_live(names, config, keyring) -> int:
    problems = 0
    for name in names:
        path = database_path(spec_for(name), config)
        if not path.exists():  # opening would create an empty file and report it as "v0"
            print(f"FAIL {name}: missing ({path})")
            problems += 1
            continue
        db = None
        try:
            db = open_database(name, config, keyring, migrate=False)
            result = [r[0] for r in db.query("PRAGMA integrity_check")]
            status = migrator_for(db).status()
        except StorageError as exc:
            print(f"FAIL {name}: {exc}")
            problems += 1
            continue
        # A damaged file surfaces as a raw driver error (e.g. "SQL logic error"), not ours.
        except (sqlcipher3.Error, sqlite3.Error) as exc:
            print(f"FAIL {name}: unreadable ({exc}): the file is damaged")
            problems += 1
            continue
        finally:
            if db is not None:
                db.close_all()
        ok = result == ["ok"] and status.up_to_date
        problems += not ok
        detail = "integrity ok" if result == ["ok"] else f"integrity: {'; '.join(result[:3])}"
        print(f"{'ok  ' if ok else 'FAIL'} {name:<18} {detail}; schema v{status.current}/{status.latest}")
    return problems


def check_backup(target: str, names, config, keyring) -> int:
    directory = Path(target) if target != "latest" else _latest_backup()
    problems = 0
    entries = [e for e in read_manifest(directory) if e.name in names]
    if not entries:
        raise scripting.ScriptError(f"{directory}: the manifest lists none of the selected databases")
    for entry in entries:
        spec_db = Database(directory / entry.file, None if config.bench_plaintext else keyring.database_key,
                           name=entry.name)
        try:
            verify_backup_entry(directory, entry, spec_db)
            print(f"ok   backup {entry.name:<18} checksum and integrity ok")
        except BackupVerificationError as exc:
            print(f"FAIL backup {exc}")
            problems += 1
    return problems


def _latest_backup() -> Path:
    sets = sorted(p for p in Path("backups").glob("*") if (p / "manifest.json").exists())
    if not sets:
        raise scripting.ScriptError("no backup sets under backups/; pass a directory")
    return sets[-1]


def main(args) -> int:
    config, keyring = scripting.load_config_and_keyring(must_exist=True)
    names = scripting.selected_databases(args.database)
    problems = check_backup(args.backup_check, names, config, keyring) if args.backup_check         else check_live(names, config, keyring)
    print("all checks passed" if not problems else f"{problems} problem(s) found")
    return 1 if problems else 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
