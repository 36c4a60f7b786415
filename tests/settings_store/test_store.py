"""SettingsStore on each backend (a real SQLCipher settings.db, the settings schema of a real
PostgreSQL database) with real field encryption."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from compliance.field_crypto import FieldCipher
from compliance.keyring import Keyring
from twin.settings_store import (ChangeOutcome, SensitiveValueError, SettingsStore,
                                 SettingsValidationError)
from twin.settings_store.schema import MIGRATIONS
from twin.storage import Database, FileBacked, IntegrityError, Migrator

SECRET = "sk-live-4f9c2a7e1b3d5e6f8a9b0c1d2e3f4a5b"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("settings")


@pytest.fixture
def store(db, keyring) -> SettingsStore:
    return SettingsStore.from_keyring(db, keyring, actor="ops-alice")


def audit_count(db) -> int:
    return db.query_one("SELECT count(*) FROM config_audit")[0]


# -- configurations ---------------------------------------------------------------------

def test_a_configuration_reads_back_and_a_missing_one_gives_the_default(store):
    assert store.set_config("slack_channel", "#ops", "slack", "where alerts go") is ChangeOutcome.CREATED
    assert store.get_config("slack_channel") == "#ops"
    assert store.get_config("nope") is None and store.get_config("nope", "fallback") == "fallback"
    entry = store.get_config_entry("slack_channel")
    assert (entry.category, entry.description, entry.sensitive, entry.updated_by) == (
        "slack", "where alerts go", False, "ops-alice")


def test_configurations_by_category_are_sorted_by_key(store):
    store.set_config("slack_token", SECRET, "slack", sensitive=True)
    store.set_config("slack_channel", "#ops", "slack")
    store.set_config("model", "gpt", "ai")
    entries = store.configs_by_category("slack")
    assert [(e.key, e.value) for e in entries] == [("slack_channel", "#ops"), ("slack_token", SECRET)]
    assert store.configs_by_category("none") == []


def test_a_sensitive_value_is_returned_decrypted_but_stored_as_ciphertext(store, db):
    store.set_config("openai_api_key", SECRET, "ai", sensitive=True)
    assert store.get_config("openai_api_key") == SECRET
    stored = db.query_one("SELECT value FROM configurations WHERE key = 'openai_api_key'")[0]
    assert isinstance(stored, bytes) and SECRET.encode() not in stored


@pytest.mark.parametrize("encrypted_file", [True, False], ids=["sqlcipher", "plain-sqlite"])
def test_a_sensitive_value_never_reaches_the_database_file_or_its_wal(tmp_path, keyring, encrypted_file):
    # On plain SQLite only field encryption stands between the secret and the disk, so this
    # variant proves the field encryption itself; the control value proves the scan sees text.
    db = Database(tmp_path / "settings.db", keyring.database_key if encrypted_file else None)
    Migrator(db, MIGRATIONS).migrate()
    store = SettingsStore.from_keyring(db, keyring)
    store.set_config("control", "visible-control-value-123")
    store.set_config("openai_api_key", "first-" + SECRET, sensitive=True)
    store.set_config("openai_api_key", SECRET, sensitive=True)  # the old value passes through too
    wal = tmp_path / "settings.db-wal"
    assert wal.stat().st_size > 0  # still in the WAL: nothing checkpointed yet
    data = (tmp_path / "settings.db").read_bytes() + wal.read_bytes()
    assert SECRET.encode() not in data and b"first-" not in data
    assert (b"visible-control-value-123" in data) is (not encrypted_file)
    db.close_all()
    assert SECRET.encode() not in (tmp_path / "settings.db").read_bytes()


def test_a_ciphertext_copied_to_another_key_does_not_decrypt(store, db):
    store.set_config("key_a", SECRET, sensitive=True)
    store.set_config("key_b", "other", sensitive=True)
    db.execute("UPDATE configurations SET value = (SELECT value FROM configurations WHERE key = 'key_a') "
               "WHERE key = 'key_b'")
    with pytest.raises(SensitiveValueError) as info:
        store.get_config("key_b")
    assert SECRET not in str(info.value)


def test_the_schema_refuses_a_plaintext_value_in_a_sensitive_row(db):
    with pytest.raises(IntegrityError):
        db.execute("INSERT INTO configurations (key, value, is_sensitive, updated_by) "
                   "VALUES ('k', 'plain secret', 1, 'x')")
    with pytest.raises(IntegrityError):
        db.execute("INSERT INTO config_audit (scope, config_key, action, new_value, is_sensitive, "
                   "changed_by) VALUES ('configuration', 'k', 'create', 'plain secret', 1, 'x')")


def test_the_schema_refuses_json_columns_that_do_not_hold_their_kind_of_json(db):
    # What the API refuses, a writer going round it cannot store either (CHECKs on both backends).
    for sql in ("INSERT INTO business_goals (id, title, weekly_actions) VALUES ('g', 't', '{\"a\": 1}')",
                "INSERT INTO business_goals (id, title, metadata) VALUES ('g', 't', '[1]')",
                "INSERT INTO app_settings (key, value, value_type, updated_by) "
                "VALUES ('k', '{not json', 'json', 'x')",
                "INSERT INTO performance_metrics (metric_name, metric_value, additional_data) "
                "VALUES ('m', 1, 'nope')"):
        with pytest.raises(IntegrityError):
            db.execute(sql)
    assert db.query_one("SELECT count(*) FROM business_goals")[0] == 0


def test_plain_values_keep_every_character_and_metric_ids_count_up(store):
    text = "naïve café ✓ 東京 \\x01 'quoted' 100%"
    store.set_config("greeting", text)
    assert store.get_config("greeting") == text
    assert store.set_config("greeting", text) is ChangeOutcome.UNCHANGED
    first, second = (store.log_performance_metric("rt", v) for v in (1.0, 2.0))
    assert second == first + 1
    assert [m.id for m in store.performance_metrics("rt")] == [first, second]


def test_repr_str_to_dict_and_logs_never_show_a_sensitive_value(store, caplog):
    caplog.set_level(logging.DEBUG)
    store.set_config("db_password", SECRET, "db", sensitive=True)
    store.set_config("db_password", SECRET + "-2", "db", sensitive=True)
    entry = store.get_config_entry("db_password")
    assert entry.value == SECRET + "-2"
    shown = " ".join([repr(entry), str(entry), repr(store.configs_by_category("db")), repr(store),
                      str(entry.to_dict()), repr(store.config_history("db_password")), caplog.text])
    assert SECRET not in shown
    assert entry.to_dict(reveal=True)["value"] == SECRET + "-2"
    assert "db_password" in caplog.text  # the change is logged, only without its value
    store.delete_config("db_password")
    assert SECRET not in caplog.text


def test_every_change_is_audited_with_who_and_when_and_no_op_writes_are_not(store, db):
    store.set_config("timeout", "30")
    assert store.set_config("timeout", "30") is ChangeOutcome.UNCHANGED
    assert store.set_config("timeout", "45", changed_by="ops-bob") is ChangeOutcome.UPDATED
    assert store.set_config("timeout", "45", description="seconds") is ChangeOutcome.UPDATED
    assert store.delete_config("timeout") is True and store.delete_config("timeout") is False
    history = store.config_history("timeout")
    assert [(h.action, h.old_value, h.new_value, h.changed_by) for h in history] == [
        ("create", None, "30", "ops-alice"), ("update", "30", "45", "ops-bob"),
        ("update", "45", "45", "ops-alice"), ("delete", "45", None, "ops-alice")]
    assert all(abs(datetime.fromisoformat(h.changed_at) - datetime.now(timezone.utc)) < timedelta(minutes=1)
               for h in history)
    assert store.get_config("timeout") is None


def test_sensitive_changes_are_audited_as_keyed_hashes(store, db, keyring):
    store.set_config("api_token", SECRET, sensitive=True)
    store.set_config("api_token", "rotated", sensitive=True)
    store.set_config("api_token", SECRET, sensitive=True)
    created, rotated, restored = store.config_history("api_token")
    assert all(h.sensitive for h in (created, rotated, restored))
    assert created.new_value.startswith("hmac-sha256:") and SECRET not in created.new_value
    assert created.new_value == rotated.old_value == restored.new_value  # same value, same hash
    assert rotated.new_value != created.new_value
    # Keyed: a store with another keyring hashes the same value differently.
    other = SettingsStore.from_keyring(db, Keyring.generate())
    other.set_config("api_token", "x", sensitive=True)  # cannot decrypt the old value: overwrites
    assert other.get_config("api_token") == "x"
    other.set_config("api_token", SECRET, sensitive=True)
    assert other.config_history("api_token")[-1].new_value != created.new_value


def test_without_an_audit_key_secrets_are_audited_as_plain_sha256(db, keyring):
    store = SettingsStore(db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    store.set_config("api_token", SECRET, sensitive=True)
    assert store.config_history("api_token")[0].new_value.startswith("sha256:")
    assert store.get_config("api_token") == SECRET


def test_a_key_that_stops_being_sensitive_keeps_its_old_value_hidden_in_the_audit(store, db):
    store.set_config("webhook_url", SECRET, sensitive=True)
    assert store.set_config("webhook_url", "https://example.invalid/hook") is ChangeOutcome.UPDATED
    last = store.config_history("webhook_url")[-1]
    assert last.sensitive and last.old_value.startswith("hmac-sha256:")
    stored = db.query_one("SELECT value, is_sensitive FROM configurations")
    # In clear now, as a plain value is: TEXT on SQLite, its UTF-8 bytes in PostgreSQL's BYTEA.
    assert stored["is_sensitive"] == 0
    assert stored["value"] == ("https://example.invalid/hook" if isinstance(db, FileBacked)
                               else b"https://example.invalid/hook")


def test_audit_rows_cannot_be_rewritten(store, db):
    store.set_config("a", "1")
    with pytest.raises(IntegrityError):
        db.execute("UPDATE config_audit SET changed_by = 'someone else'")


@pytest.mark.parametrize("call", [
    lambda s: s.set_config("", "v"), lambda s: s.set_config(" padded ", "v"),
    lambda s: s.set_config("k", 3), lambda s: s.set_config("k", "v", sensitive="yes"),
    lambda s: s.set_config("k", "v", category=""), lambda s: s.set_config("k", "v", changed_by=""),
])
def test_invalid_configuration_writes_are_refused(store, db, call):
    with pytest.raises(SettingsValidationError):
        call(store)
    assert audit_count(db) == 0


def test_rotating_the_field_key_rewraps_secrets_in_batches_without_audit_rows(store, db, keyring):
    for i in range(5):
        store.set_config(f"api_token_{i}", f"{SECRET}-{i}", sensitive=True)
    store.set_config("plain", "p")
    rotated = SettingsStore.from_keyring(db, keyring.with_new_field_key())
    before = audit_count(db)
    assert rotated.rewrap_sensitive(batch_size=2) == 5 and rotated.rewrap_sensitive() == 0
    assert [rotated.get_config(f"api_token_{i}") for i in range(5)] == [f"{SECRET}-{i}" for i in range(5)]
    assert audit_count(db) == before
    with pytest.raises(SensitiveValueError):
        store.get_config("api_token_0")  # the old keyring lacks the new key version


# -- typed app settings -------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    True, False, 0, 3, -7, 2**70, 0.5, 1e-300, -0.0, 3.0, "", "text", "true", "3",
    {"ai_mode": True, "n": 1, "ratio": 1.0, "nested": {"list": [1, "a", None, False]}}, [], [1, 2.5],
])
def test_app_settings_come_back_as_the_type_they_were_stored_with(store, value):
    store.set_app_setting("setting", value)
    back = store.get_app_setting("setting")
    assert back == value and type(back) is type(value)
    if isinstance(value, dict):
        assert type(back["ratio"]) is float and type(back["nested"]["list"][3]) is bool


def test_app_settings_default_list_and_delete(store):
    store.set_app_setting("max_retries", 3)
    store.set_app_setting("debug_mode", True)
    assert store.get_app_setting("missing", 7) == 7
    assert store.app_settings() == {"debug_mode": True, "max_retries": 3}
    assert store.delete_app_setting("debug_mode") is True and store.delete_app_setting("debug_mode") is False
    assert store.app_settings() == {"max_retries": 3}


@pytest.mark.parametrize("value", [(1, 2), {1: "int key"}, {"t": (1,)}, {1, 2}, None, object(),
                                   {"x": float("nan")}, b"bytes"])
def test_app_settings_that_would_not_round_trip_are_refused(store, value):
    with pytest.raises(SettingsValidationError):
        store.set_app_setting("setting", value)
    assert store.get_app_setting("setting", "absent") == "absent"


def test_app_setting_changes_are_audited_and_type_changes_count_as_changes(store):
    store.set_app_setting("limit", 3)
    assert store.set_app_setting("limit", 3) is ChangeOutcome.UNCHANGED
    assert store.set_app_setting("limit", 3.0) is ChangeOutcome.UPDATED
    assert store.get_app_setting("limit") == 3.0 and type(store.get_app_setting("limit")) is float
    history = store.config_history("limit", scope="app_setting")
    assert [(h.action, h.old_value, h.new_value) for h in history] == [
        ("create", None, "3"), ("update", "3", "3.0")]
    assert store.config_history("limit") == []  # not a configuration


# -- business goals ---------------------------------------------------------------------------

GOAL = {"id": "sales_q1_2025", "title": "Q1 Sales Target", "description": "Achieve $50k in Q1 sales",
        "area": "sales", "status": "in_progress", "priority": 4,
        "weekly_actions": ["Follow up with leads", "Send proposals"],
        "success_metrics": {"revenue": "$50000"}}


def test_a_business_goal_round_trips_with_defaults(store):
    assert store.save_business_goal(GOAL) is ChangeOutcome.CREATED
    goal = store.get_business_goal("sales_q1_2025")
    assert {k: goal[k] for k in GOAL} == GOAL
    assert (goal["progress"], goal["metadata"], goal["target_date"]) == (0.0, {}, None)
    assert store.get_business_goal("nope") is None


def test_business_goals_filter_by_status_and_area_highest_priority_first(store):
    store.save_business_goal(GOAL)
    store.save_business_goal({"id": "hire", "title": "Hire", "area": "ops", "priority": 5,
                              "status": "in_progress"})
    store.save_business_goal({"id": "blog", "title": "Blog", "area": "sales", "priority": 2})
    assert [g["id"] for g in store.get_business_goals()] == ["hire", "sales_q1_2025", "blog"]
    assert [g["id"] for g in store.get_business_goals(status="in_progress")] == ["hire", "sales_q1_2025"]
    assert [g["id"] for g in store.get_business_goals(area="sales")] == ["sales_q1_2025", "blog"]
    assert [g["id"] for g in store.get_business_goals(status="in_progress", area="sales")] == ["sales_q1_2025"]


def test_saving_a_goal_again_is_a_no_op_and_a_change_is_an_update(store):
    store.save_business_goal(GOAL)
    created = store.get_business_goal(GOAL["id"])
    assert store.save_business_goal(dict(GOAL)) is ChangeOutcome.UNCHANGED
    assert store.save_business_goal({**GOAL, "progress": 40}) is ChangeOutcome.UPDATED
    updated = store.get_business_goal(GOAL["id"])
    assert updated["progress"] == 40.0 and updated["created_at"] == created["created_at"]
    assert store.delete_business_goal(GOAL["id"]) is True
    assert store.get_business_goals() == []


@pytest.mark.parametrize("change", [{"priority": 9}, {"priority": "high"}, {"status": "active"},
                                    {"progress": 120}, {"weekly_actions": "call"}, {"title": ""},
                                    {"owner": "kim"}, {"id": None}])
def test_invalid_goals_are_refused(store, change):
    with pytest.raises(SettingsValidationError):
        store.save_business_goal({**GOAL, **change})
    assert store.get_business_goals() == []


# -- performance metrics --------------------------------------------------------------------

def test_performance_metrics_are_queried_by_name_in_a_half_open_time_window(store):
    for minutes, name, value in ((0, "slack_response_time", 0.8), (10, "slack_response_time", 1.2),
                                 (20, "db_latency", 0.01), (30, "slack_response_time", 0.5)):
        store.log_performance_metric(name, value, "seconds", {"endpoint": "/slack"},
                                     recorded_at=T0 + timedelta(minutes=minutes))
    window = store.performance_metrics("slack_response_time", since=T0 + timedelta(minutes=10),
                                       until=T0 + timedelta(minutes=30))
    assert [(m.value, m.unit, m.extra, m.recorded_at) for m in window] == [
        (1.2, "seconds", {"endpoint": "/slack"}, "2026-03-01T12:10:00.000000Z")]
    assert [m.name for m in store.performance_metrics(until="2026-03-01T13:25:00+01:00")] == [
        "slack_response_time", "slack_response_time", "db_latency"]
    assert len(store.performance_metrics(limit=2)) == 2


def test_the_hours_shorthand_looks_back_from_now(store):
    now = datetime.now(timezone.utc)
    store.log_performance_metric("rt", 1.0, recorded_at=now - timedelta(hours=30))
    store.log_performance_metric("rt", 2.0, recorded_at=now - timedelta(hours=2))
    store.log_performance_metric("rt", 3.0)
    assert [m.value for m in store.performance_metrics("rt", hours=24)] == [2.0, 3.0]
    with pytest.raises(SettingsValidationError):
        store.performance_metrics(hours=1, since=now)


def test_old_performance_metrics_can_be_purged(store):
    store.log_performance_metric("rt", 1.0, recorded_at=T0)
    store.log_performance_metric("rt", 2.0, recorded_at=T0 + timedelta(days=40))
    assert store.purge_performance_metrics(T0 + timedelta(days=30)) == 1
    assert [m.value for m in store.performance_metrics()] == [2.0]


@pytest.mark.parametrize("args", [("rt", float("nan")), ("rt", True), ("rt", "1"), ("", 1.0),
                                  ("rt", 1.0, 5), ("rt", 1.0, "s", {"x": object()})])
def test_invalid_performance_metrics_are_refused(store, args):
    with pytest.raises(SettingsValidationError):
        store.log_performance_metric(*args)
    assert store.performance_metrics() == []


# -- health ---------------------------------------------------------------------------------

def test_health_check_reports_a_healthy_store_and_leaves_no_trace(store, db):
    store.set_config("api_token", SECRET, sensitive=True)
    before = audit_count(db)
    report = store.health_check()
    assert report["healthy"] is True and report["errors"] == []
    on_file = isinstance(db, FileBacked)  # PostgreSQL's pages are the server's to check
    assert report["checks"] == {"integrity": "ok" if on_file else "skipped", "schema": "ok",
                                "write_round_trip": "ok", "sensitive_values": "ok"}
    assert (report["encrypted"], report["schema_version"], report["expected_schema_version"]) == \
        (on_file, 3, 3)
    assert report["counts"]["configurations"] == 1 and audit_count(db) == before


def test_health_check_flags_secrets_that_no_longer_decrypt_without_revealing_them(store, db):
    store.set_config("api_token", SECRET, sensitive=True)
    report = SettingsStore.from_keyring(db, Keyring.generate()).health_check()
    assert report["healthy"] is False and report["checks"]["sensitive_values"] == "failed"
    assert "api_token" in " ".join(report["errors"]) and SECRET not in repr(report)


def test_health_check_flags_a_schema_behind_the_code(store, db):
    Migrator(db, MIGRATIONS).rollback(0)
    report = store.health_check()
    assert report["healthy"] is False and report["checks"]["schema"] == "failed"


def test_the_schema_rolls_back_to_empty_and_migrates_again(db):
    migrator = Migrator(db, MIGRATIONS)
    assert migrator.rollback(0) == [3, 2, 1]
    assert db.table_names() == ["schema_version"]
    assert migrator.migrate() == [1, 2, 3]
    assert {"configurations", "config_audit", "app_settings", "business_goals",
            "performance_metrics", "thread_contexts", "user_preferences"} <= set(db.table_names())
