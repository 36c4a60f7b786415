#!/usr/bin/env python3
"""Import legacy JSON files (settings/config, business goals) into settings.db:
``twin settings import-legacy``.

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

from twin.cli import plumbing, settings  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("data_migration.py", lambda args: (settings.import_legacy, args),
                        usage="[--settings-json FILE] [--goals-json FILE] [--dry-run] ...")
