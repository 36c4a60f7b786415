#!/usr/bin/env python3
"""Create every database (or one) under the configured data directory and migrate it to the
latest schema. Safe to run again: existing databases are only migrated forward."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin import scripting  # noqa: E402
from twin.catalog import open_database  # noqa: E402
from twin.storage.maintenance import info  # noqa: E402


def build_parser():
    p = scripting.parser("Create and migrate the learner twin databases.")
    scripting.add_database_option(p)
    return p


def main(args) -> int:
    config, keyring = scripting.load_config_and_keyring()
    for name in scripting.selected_databases(args.database):
        db = open_database(name, config, keyring)
        details = info(db)
        print(f"{name:<18} schema v{details['schema_version']:<3} {details['journal_mode']:<4} "
              f"{len(details['tables'])} tables  {db.path}")
        db.close_all()
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
