"""Running the retention purge (and the learner model's refit): once, or nightly under APScheduler."""

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


def refit_once(config: Config | None = None) -> dict[str, Any]:
    """Fit every skill's parameters from the (remaining) evidence and recompute the estimates
    made under older versions: after a night's purges and the day's erasures, the parameters
    rest on the evidence still held."""
    runtime = Runtime.open(config)
    try:
        fitted = runtime.model_fitting.fit()
        recomputed = runtime.model_fitting.recompute()
        return {"skills": fitted.skills, "changed": fitted.changed, **{f"recomputed_{k}": v
                                                                      for k, v in recomputed.items()}}
    finally:
        runtime.close()


def nightly_job(config: Config | None = None) -> None:
    """One scheduled run: the purge, then (``TWIN_MODEL_FIT_NIGHTLY``) the refit. Never raises:
    a failed night is logged and the next one still runs."""
    try:
        report = run_once(config=config)
        log.info("retention run finished in %.1fs: %s", report.duration_s, report.counts)
    except JobAlreadyRunningError as exc:
        log.warning("retention run skipped: %s", exc)
    except Exception:
        log.exception("retention run failed; the next scheduled run will try again")
    if not (config or Config.from_env()).model_fit_nightly:
        return
    try:
        log.info("learner model refit finished: %s", refit_once(config))
    except JobAlreadyRunningError as exc:
        log.warning("learner model refit skipped: %s", exc)
    except Exception:
        log.exception("learner model refit failed; the next scheduled run will try again")


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
