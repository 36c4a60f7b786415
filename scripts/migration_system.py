#!/usr/bin/env python3
"""Schema migrations: status, up (to latest or --to N), down (--to N).

  python scripts/migration_system.py status
  python scripts/migration_system.py up [--database NAME] [--to N]
  python scripts/migration_system.py down --database NAME --to N
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin import scripting  # noqa: E402
from twin.catalog import migrator_for, open_database  # noqa: E402


def build_parser():
    p = scripting.parser("Apply, roll back or show schema migrations.")
    p.add_argument("command", choices=("status", "up", "down"))
    scripting.add_database_option(p)
    p.add_argument("--to", type=int, help="target version (up: default latest; down: required)")
    return p


def main(args) -> int:
    if args.command == "down" and (args.to is None or args.database is None):
        raise scripting.ScriptError("down needs --database NAME and --to N (rolling back is destructive)")
    config, keyring = scripting.load_config_and_keyring()
    for name in scripting.selected_databases(args.database):
        db = open_database(name, config, keyring, migrate=False)
        migrator = migrator_for(db)
        if args.command == "up":
            applied = migrator.migrate(args.to)
            print(f"{name}: applied {applied or 'nothing'}; now at v{migrator.current_version()}")
        elif args.command == "down":
            undone = migrator.rollback(args.to)
            print(f"{name}: rolled back {undone or 'nothing'}; now at v{migrator.current_version()}")
        else:
            status = migrator.status()
            state = "up to date" if status.up_to_date else f"pending {status.pending}"
            print(f"{name:<18} v{status.current} of {status.latest}  {state}")
        db.close_all()
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
