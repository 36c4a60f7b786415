#!/usr/bin/env python3
"""Verify the live databases (decryptable, integrity_check, schema up to date) and, with
--backup-check, a backup set (checksums, integrity, the keys it needs): ``twin db verify``.
Exit 0 healthy, 1 problems found.

  python scripts/verify_databases.py [--database NAME]
  python scripts/verify_databases.py --backup-check [DIR]      # default: newest set in <data dir>/backups
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import db_backups, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("verify_databases.py", lambda args: (db_backups.verify, args),
                        usage="[--database NAME] [--backup-check [DIR]]")
