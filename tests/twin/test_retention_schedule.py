"""The nightly retention job: schedule, a failing night, a real run."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from twin.config import Config, ConfigError
from twin.retention_schedule import build_scheduler, nightly_job, run_once


def test_default_schedule_is_0230_utc_and_never_overlaps(config):
    scheduler = build_scheduler(config=config, scheduler_class=BackgroundScheduler)
    job = scheduler.get_job("retention")
    assert str(job.trigger) == "cron[month='*', day='*', day_of_week='*', hour='2', minute='30']"
    assert job.max_instances == 1 and job.coalesce is True
    fire = job.trigger.get_next_fire_time(None, datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
    assert (fire.hour, fire.minute, fire.utcoffset().total_seconds()) == (2, 30, 0)


def test_cron_is_configurable_and_invalid_cron_is_a_clear_error(config):
    scheduler = build_scheduler("15 4 * * 1", config=config, scheduler_class=BackgroundScheduler)
    assert "hour='4', minute='15'" in str(scheduler.get_job("retention").trigger)
    with pytest.raises(ConfigError, match="invalid cron expression"):
        build_scheduler("61 * * *", config=config, scheduler_class=BackgroundScheduler)


def test_a_failing_night_is_logged_and_does_not_raise(tmp_path, caplog):
    # A keyring path that is a directory cannot be read: the run fails inside the job.
    broken = Config(env="production", data_dir=tmp_path / "data", keyring_path=tmp_path, environ={})
    with caplog.at_level(logging.ERROR):
        nightly_job(broken)  # must not raise, or APScheduler would log and the process could die
    assert "retention run failed" in caplog.text


def test_run_once_purges_expired_profiles(config, keyring):
    keyring.save(config.keyring_path)
    from compliance.audit import Actor
    from twin.runtime import Runtime
    rt = Runtime.open(config)
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "old"})
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "young"})
    rt.twin_db.execute("UPDATE learning_profiles SET ttl_expires_at = '2000-01-01T00:00:00.000000Z' "
                       "WHERE user_id_hash = ?", (rt.hasher.hash("old"),))
    rt.close()
    assert run_once(dry_run=True, config=config).counts["learning_profiles"] == 1
    report = run_once(config=config)
    assert report.counts["learning_profiles"] == 1 and report.subject_keys_destroyed == 1
    rt = Runtime.open(config)
    assert rt.twin_db.query_one("SELECT count(*) FROM learning_profiles")[0] == 1
    rt.close()


def _learners_with_evidence(config, count: int) -> None:
    from datetime import timedelta

    from compliance.audit import Actor
    from twin.runtime import Runtime
    rt = Runtime.open(config)
    start = rt.clock() - timedelta(days=2)
    for n in range(count):
        pid = rt.profiles.create(Actor("t", "admin"), None, {"user_id": f"night-{n}"})[0]["profile_id"]
        rt.evidence.ingest(Actor("t", "admin"), None, pid, [
            {"evidence_id": f"e{i}", "domain": "math", "topic": "algebra", "item_id": "q",
             "correct": (n + i) % 3 != 0, "observed_at": start + timedelta(minutes=i)} for i in range(10)])
    rt.close()


def test_the_nightly_job_refits_the_skill_parameters_after_the_purge(config, keyring):
    import dataclasses

    from twin.runtime import Runtime
    keyring.save(config.keyring_path)
    _learners_with_evidence(config, 50)

    nightly_job(dataclasses.replace(config, model_fit_nightly=False))
    rt = Runtime.open(config)
    assert rt.skill_parameters.all_current() == [] and rt.audit.query(action="model_fit") == []
    rt.close()
    nightly_job(config)

    rt = Runtime.open(config)
    try:
        (current,) = rt.skill_parameters.all_current()
        assert current["learners"] == 50
        assert {r[0] for r in rt.twin_db.query("SELECT parameters_version FROM knowledge_states")} == \
            {current["version"]}
        assert [e.actor_id for e in rt.audit.query(action="model_fit")] == ["system:model-fit"]
        assert len(rt.audit.query(action="purge")) <= 1
    finally:
        rt.close()
