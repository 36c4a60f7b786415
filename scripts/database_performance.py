#!/usr/bin/env python3
"""Per database: size, page and freelist counts, which index each store's main query uses and
its timing, and the Redis caches' hit rates when configured: ``twin db performance``.

  python scripts/database_performance.py [--database NAME] [--json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import db_performance, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("database_performance.py", lambda args: (db_performance.performance_command, args),
                        usage="[--database NAME] [--json]")
