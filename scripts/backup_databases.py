#!/usr/bin/env python3
"""Back up the databases into an encrypted backup set with a checksum manifest, or restore one:
``twin db backup`` / ``twin db restore``.

  python scripts/backup_databases.py [--database NAME] [--out DIR]   # default <data dir>/backups/<UTC time>
  python scripts/backup_databases.py --restore DIR [--database NAME] --yes [--force] [--dry-run]

Restoring replaces live files: it is refused while a service runs. After a restore, every
erasure tombstone is re-applied before any data can be served, and tombstones recorded after
the backup are carried into a restored privacy vault (the newer erasure time wins).

digital_twin and privacy_vault are a pair: the vault holds the data keys of the twin's
subjects. Restoring only one of them leaves subjects created after the backup without a
usable key (their data becomes unreadable), so it is refused unless ``--force`` is given.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import db_backups, plumbing  # noqa: E402


def pick(args):
    if plumbing.asks_help(args) and not {'--restore'} & set(args):  # the script's own help
        return None
    restoring, rest = plumbing.take_flag(args, "--restore", with_value=True)
    return (db_backups.restore, rest) if restoring else (db_backups.backup, args)


if __name__ == "__main__":
    plumbing.run_script("backup_databases.py", pick, doc=__doc__,
                        usage="[--database NAME] [--out DIR] | --restore DIR --yes [--force]")
