#!/usr/bin/env python3
"""The retention job: purge expired personal data.

  python scripts/retention_job.py --once [--dry-run]   # purge now (or list what would go) and exit
  python scripts/retention_job.py                      # run nightly (TWIN_RETENTION_CRON, UTC)

The scheduler logs every run, survives a failing run (the next night still runs) and never
overlaps a run, not even with one in another process (a lease in the privacy vault).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import json  # noqa: E402
import logging  # noqa: E402

from twin import scripting  # noqa: E402
from twin.retention_schedule import run_forever, run_once  # noqa: E402


def build_parser():
    p = scripting.parser("Purge expired data now (--once) or every night.", log_level="INFO")
    p.add_argument("--once", action="store_true", help="run one purge now and exit")
    p.add_argument("--dry-run", action="store_true", help="with --once: list what would go, delete nothing")
    p.add_argument("--cron", help="cron expression in UTC (default TWIN_RETENTION_CRON or '30 2 * * *')")
    return p


def main(args) -> int:
    scripting.load_config_and_keyring(must_exist=True)
    if args.dry_run and not args.once:
        raise scripting.ScriptError("--dry-run goes with --once")
    if args.once:
        report = run_once(dry_run=args.dry_run,
                          progress=lambda table, n: logging.info("purged %d rows from %s so far", n, table))
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    run_forever(args.cron)
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
