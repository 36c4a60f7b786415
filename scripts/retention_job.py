#!/usr/bin/env python3
"""The retention job: purge expired personal data: ``twin retention run|schedule``.

  python scripts/retention_job.py --once [--dry-run]   # purge now (or list what would go) and exit
  python scripts/retention_job.py [--cron EXPR]        # run nightly (TWIN_RETENTION_CRON, UTC)

The scheduler logs every run, survives a failing run (the next night still runs) and never
overlaps a run, not even with one in another process (a lease in the privacy vault).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import plumbing, retention  # noqa: E402


def pick(args):
    if plumbing.asks_help(args) and not {'--once'} & set(args):  # the script's own help
        return None
    once, rest = plumbing.take_flag(args, "--once")
    return (retention.run, rest) if once else (retention.schedule, args)


if __name__ == "__main__":
    plumbing.run_script("retention_job.py", pick, doc=__doc__,
                        usage="--once [--dry-run] | [--cron EXPR]",
                        log_level="INFO")
