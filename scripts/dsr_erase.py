#!/usr/bin/env python3
"""Erase every stored datum of one data subject (GDPR art. 17) straight from the database files:
``twin dsr erase``.

  python scripts/dsr_erase.py --user-id ID --dry-run     # show what would be deleted
  python scripts/dsr_erase.py --user-id ID               # asks for confirmation
  python scripts/dsr_erase.py --user-id ID --yes         # no question (automation)

Prints the erasure receipt (counts per table, re-scan proof) as JSON. Safe to re-run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import dsr, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("dsr_erase.py", lambda args: (dsr.erase, args),
                        usage="(--user-id ID | --user-id-prompt) [--dry-run] [--yes]")
