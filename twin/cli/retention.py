"""``twin retention run|schedule``: purge expired personal data (storage limitation)."""

from __future__ import annotations

import json

import click

from ..storage.progress import report
from .plumbing import command, dry_run_option, group, load_deployment

retention = group("retention", "Purge expired data now, or every night.")


class _PurgeProgress:
    """The purger reports (table, rows so far); one progress line or bar per table."""

    def __init__(self) -> None:
        self.table, self.bar, self.done = None, None, 0

    def __call__(self, table: str, total: int) -> None:
        if table != self.table:
            self.close()
            self.table, self.done = table, 0
            self.bar = report(f"purge {table}", None, "rows").__enter__()
        self.bar.update(total - self.done)
        self.done = total

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@command(retention, "run")
@dry_run_option("list what would go (counts and sample row ids), delete nothing")
def run(dry_run: bool) -> int:
    """Purge everything expired now, in batches, without blocking a running service (one run
    at a time across processes). Prints the report as JSON."""
    from ..retention_schedule import run_once

    deployment = load_deployment()
    progress = _PurgeProgress()
    try:
        result = run_once(dry_run=dry_run, config=deployment.config, progress=progress)
    finally:
        progress.close()
    click.echo(json.dumps(result.to_dict(), indent=2))
    return 0


@command(retention, "schedule", log_level="INFO")
@click.option("--cron", help="cron expression in UTC (default TWIN_RETENTION_CRON or '30 2 * * *')")
def schedule(cron: str | None) -> int:
    """Run the purge on a cron schedule (UTC) until stopped; a failing night is logged and
    the next one still runs. For a deployment whose service does not run it in-process."""
    from ..retention_schedule import build_scheduler

    deployment = load_deployment()
    build_scheduler(cron, deployment.config).start()
    return 0


COMMAND = retention
