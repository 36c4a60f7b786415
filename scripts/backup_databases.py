#!/usr/bin/env python3
"""Back up the databases into an encrypted backup set with a checksum manifest, or restore one.

  python scripts/backup_databases.py [--database NAME] [--out DIR]     # default backups/<UTC time>
  python scripts/backup_databases.py --restore DIR [--database NAME] --yes [--force]

Restoring replaces live files: stop the service first. After a restore, every erasure
tombstone is re-applied before any data can be served, and tombstones recorded after the
backup are carried into a restored privacy vault (the newer erasure time wins).

digital_twin and privacy_vault are a pair: the vault holds the data keys of the twin's
subjects. Restoring only one of them leaves subjects created after the backup without a
usable key (their data becomes unreadable), so it is refused unless ``--force`` is given.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from datetime import datetime, timezone  # noqa: E402

from twin import scripting  # noqa: E402
from twin.catalog import open_database  # noqa: E402
from twin.runtime import Runtime  # noqa: E402
from twin.storage import backup_database, read_manifest, restore_database, write_manifest  # noqa: E402

# The vault holds the twin's per-subject data keys: these two are only consistent together.
PAIRED = frozenset({"digital_twin", "privacy_vault"})


def build_parser():
    p = scripting.parser("Back up or restore the learner twin databases.")
    scripting.add_database_option(p)
    p.add_argument("--out", type=Path, help="backup directory (default backups/<UTC timestamp>)")
    p.add_argument("--restore", type=Path, metavar="DIR", help="restore from this backup set")
    p.add_argument("--yes", action="store_true", help="confirm a restore (it replaces live data)")
    p.add_argument("--force", action="store_true",
                   help="allow restoring only one of digital_twin/privacy_vault (subjects created "
                        "after the backup lose their data keys)")
    return p


def backup(args, config, keyring) -> int:
    out = args.out or Path("backups") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    entries = []
    for name in scripting.selected_databases(args.database):
        db = open_database(name, config, keyring)
        entry = backup_database(db, out)
        db.close_all()
        entries.append(entry)
        print(f"{name:<18} {entry.size:>12,} bytes  sha256 {entry.sha256[:16]}…  v{entry.schema_version}")
    write_manifest(out, entries)
    print(f"backup set written to {out}")
    return 0


def restore(args, config, keyring) -> int:
    if not args.yes:
        raise scripting.ScriptError("a restore replaces live databases: stop the service and pass --yes")
    entries = {e.name: e for e in read_manifest(args.restore)}
    names = [n for n in scripting.selected_databases(args.database) if n in entries]
    if not names:
        raise scripting.ScriptError("the backup set holds none of the selected databases")
    half = sorted(PAIRED & set(names))
    if len(half) == 1 and not args.force:
        raise scripting.ScriptError(
            f"restoring {half[0]} without its pair ({' and '.join(sorted(PAIRED))} "
            "share the subjects' data keys) makes data of subjects created after the backup "
            "unreadable; restore both or pass --force")
    carried = []
    if "privacy_vault" in names:  # keep tombstones recorded after the backup was taken
        vault = open_database("privacy_vault", config, keyring)
        carried = [tuple(r) for r in vault.query(
            "SELECT user_id_hash, receipt_id, erased_at, counts FROM erasure_tombstones")]
        vault.close_all()
    for name in names:
        db = open_database(name, config, keyring, migrate=False)
        restore_database(args.restore, entries[name], db)
        db.close_all()
        print(f"{name:<18} restored from {args.restore}")
    if carried:
        vault = open_database("privacy_vault", config, keyring)

        def merge(conn):
            # The later erasure wins: an older tombstone in the backup must not hide a newer one
            # (it would let a key created between the two erasures survive the restore).
            conn.executemany(
                "INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id_hash) DO UPDATE SET "
                "erased_at = excluded.erased_at, receipt_id = excluded.receipt_id, counts = excluded.counts "
                "WHERE excluded.erased_at > erasure_tombstones.erased_at", carried)
            conn.execute("DELETE FROM subject_keys WHERE user_id_hash IN (SELECT t.user_id_hash FROM "
                         "erasure_tombstones t WHERE t.erased_at >= subject_keys.created_at)")
        vault.write(merge)
        vault.close_all()
    runtime = Runtime.open(config)  # migrates and re-applies every tombstone
    runtime.close()
    print("erasure tombstones re-applied")
    return 0


def main(args) -> int:
    config, keyring = scripting.load_config_and_keyring(must_exist=True)
    return restore(args, config, keyring) if args.restore else backup(args, config, keyring)


if __name__ == "__main__":
    scripting.run(main, build_parser())
