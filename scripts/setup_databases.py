#!/usr/bin/env python3
"""Create every database (or one) under the configured data directory and migrate it to the
latest schema: ``twin db setup``. Safe to run again: existing databases are only migrated
forward."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import db, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("setup_databases.py", lambda args: (db.setup, args), usage="[--database NAME]")
