#!/usr/bin/env python3
"""Schema migrations: ``twin db status|migrate|rollback``.

  python scripts/migration_system.py status [--database NAME]
  python scripts/migration_system.py up [--database NAME] [--to N]
  python scripts/migration_system.py down --database NAME --to N [--dry-run] [--yes] [--force]

``down`` prints what it will drop, asks for confirmation (or --yes), refuses to drop rows
without --force, takes a verified backup first, and is refused while a service runs.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import db, plumbing  # noqa: E402

COMMANDS = {"status": db.status, "up": db.migrate, "down": db.rollback}


def pick(args):
    for i, arg in enumerate(args):
        if arg in COMMANDS:
            return COMMANDS[arg], args[:i] + args[i + 1:]
    return None


if __name__ == "__main__":
    plumbing.run_script("migration_system.py", pick, doc=__doc__,
                        usage="{status,up,down} [--database NAME] [--to N] (down: --dry-run, --yes, --force)")
