"""Running the retention purge: once, or nightly under APScheduler."""

from __future__ import annotations

import logging
from typing import Any, Callable

from compliance.audit import Actor
from compliance.job_lock import JobAlreadyRunningError
from compliance.retention import RetentionReport

from .config import Config, ConfigError
from .metrics import observe_retention
from .runtime import Runtime

log = logging.getLogger(__name__)


def run_observed(runtime: Runtime, *, dry_run: bool = False, actor: Actor | None = None,
                 progress: Callable[[str, int], None] | None = None) -> RetentionReport:
    """One retention run on ``runtime``, counted in the metrics (dry runs are not)."""
    extra = {} if actor is None else {"actor": actor}
    try:
        report = runtime.retention.run(dry_run=dry_run, progress=progress, **extra)
    except JobAlreadyRunningError:
        if not dry_run:
            observe_retention("skipped")
        raise
    except Exception:
        if not dry_run:
            observe_retention("failed")
        raise
    if not dry_run:
        observe_retention("completed", report.counts)
    return report


def run_once(*, dry_run: bool = False, config: Config | None = None,
             progress: Callable[[str, int], None] | None = None) -> RetentionReport:
    runtime = Runtime.open(config)
    try:
        return run_observed(runtime, dry_run=dry_run, progress=progress)
    finally:
        runtime.close()


def nightly_job(config: Config | None = None) -> None:
    """One scheduled run. Never raises: a failed night is logged and the next one still runs."""
    try:
        report = run_once(config=config)
        log.info("retention run finished in %.1fs: %s", report.duration_s, report.counts)
    except JobAlreadyRunningError as exc:
        log.warning("retention run skipped: %s", exc)
    except Exception:
        log.exception("retention run failed; the next scheduled run will try again")


def build_scheduler(cron: str | None = None, config: Config | None = None,
                    scheduler_class: type | None = None) -> Any:
    """An APScheduler scheduler (blocking by default) with the nightly retention job added."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    config = config or Config.from_env()
    expression = cron or config.retention_cron
    try:
        trigger = CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        raise ConfigError(f"invalid cron expression {expression!r}: {exc}") from None
    scheduler = (scheduler_class or BlockingScheduler)(timezone="UTC")
    # max_instances=1 + coalesce: a run still going, or several missed ones, never stack up.
    scheduler.add_job(nightly_job, trigger, kwargs={"config": config}, id="retention",
                      max_instances=1, coalesce=True, misfire_grace_time=3600)
    log.info("retention scheduled with cron %r (UTC)", expression)
    return scheduler


def run_forever(cron: str | None = None, config: Config | None = None) -> None:
    """Block, running ``nightly_job`` on the cron schedule (UTC)."""
    build_scheduler(cron, config).start()
