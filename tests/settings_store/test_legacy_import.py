"""Legacy JSON import into a real settings.db: shapes, idempotency, atomicity, backup, log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.settings_store import LegacyImportError, SettingsStore
from twin.settings_store.legacy_import import (LegacyData, looks_secret, parse_goals_document,
                                               parse_settings_document, run_migration)
from twin.storage import read_manifest, verify_backup_entry

SECRET = "xoxb-1234567890-legacy-slack-token"

SETTINGS_DOC = {
    "configurations": {
        "slack_bot_token": SECRET,
        "slack_channel": {"value": "#ops", "category": "slack", "description": "alerts"},
        "notion_db_id": {"value": "abc123", "category": "notion", "sensitive": True},
        "max_tokens": 2048,
        "beta": False,
        "unset_value": None,
    },
    "app_settings": {"debug_mode": True, "max_retries": 3, "ratio": 0.25,
                     "features": {"ai_mode": True}, "greeting": {"value": "hi", "description": "d"}},
}
GOALS_DOC = [
    {"id": "sales_q1_2025", "title": "Q1 Sales Target", "area": "sales", "status": "in_progress",
     "priority": 4, "weekly_actions": ["Follow up with leads"], "success_metrics": {"revenue": "$50000"},
     "owner": "kim"},
    {"title": "Hire a designer", "priority": "high", "progress": 10},
]


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("settings")


@pytest.fixture
def store(db, keyring) -> SettingsStore:
    return SettingsStore.from_keyring(db, keyring, actor="script:data_migration")


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    settings, goals = tmp_path / "config.json", tmp_path / "business_goals.json"
    settings.write_text(json.dumps(SETTINGS_DOC))
    goals.write_text(json.dumps(GOALS_DOC))
    return settings, goals


def table_counts(db) -> dict[str, int]:
    return {t: db.query_one(f"SELECT count(*) FROM {t}")[0]
            for t in ("configurations", "app_settings", "business_goals", "config_audit")}


# -- parsing --------------------------------------------------------------------------------

def test_structured_settings_map_values_categories_and_sensitivity():
    data = parse_settings_document(SETTINGS_DOC)
    configs = {c.key: c for c in data.configurations}
    assert (configs["slack_channel"].value, configs["slack_channel"].category) == ("#ops", "slack")
    assert configs["slack_bot_token"].sensitive and configs["notion_db_id"].sensitive  # by name / flag
    assert not configs["slack_channel"].sensitive and not configs["max_tokens"].sensitive
    assert (configs["max_tokens"].value, configs["beta"].value) == ("2048", "false")
    assert data.skipped["configurations"] == ["unset_value"]
    assert {s.key: s.value for s in data.app_settings}["features"] == {"ai_mode": True}
    assert SECRET not in repr(data)


def test_a_list_of_configuration_rows_is_accepted():
    data = parse_settings_document({"configurations": [
        {"key": "a", "value": "1", "category": "x", "is_sensitive": 0},
        {"key": "b_password", "value": "p"}]})
    assert [(c.key, c.category, c.sensitive) for c in data.configurations] == [
        ("a", "x", False), ("b_password", "general", True)]


def test_a_flat_object_becomes_general_configurations():
    data = parse_settings_document({"OPENAI_API_KEY": "sk", "REGION": "eu", "PORT": 8080})
    assert [(c.key, c.value, c.category, c.sensitive) for c in data.configurations] == [
        ("OPENAI_API_KEY", "sk", "general", True), ("REGION", "eu", "general", False),
        ("PORT", "8080", "general", False)]


@pytest.mark.parametrize("name, secret", [("github_token", True), ("DB_PASSWORD", True), ("apikey", True),
                                          ("private_key_pem", True), ("aws_credentials", True),
                                          ("client_secret", True), ("slack_channel", False),
                                          ("max_tokens_per_day", False), ("region", False)])
def test_secret_looking_names_default_to_sensitive(name, secret):
    assert looks_secret(name) is secret


@pytest.mark.parametrize("doc, where", [
    ([1, 2], "must be an object"),
    ({"configurations": {"k": {"value": "v", "colour": "red"}}}, "configurations.k"),
    ({"configurations": {"k": {"value": "v", "sensitive": "yes"}}}, "configurations.k"),
    ({"configurations": [{"value": "no key"}]}, "configurations[0]"),
    ({"configurations": {}, "extra": 1}, "unknown top-level"),
    ({"app_settings": {"t": {"value": [1, {"x": float("nan")}]}}}, "app_settings.t"),
    ({"configurations": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}, "duplicate"),
])
def test_malformed_settings_documents_are_refused_naming_the_place(doc, where):
    with pytest.raises(LegacyImportError) as info:
        parse_settings_document(doc)
    assert where in str(info.value)


@pytest.mark.parametrize("doc", [GOALS_DOC, {"business_goals": GOALS_DOC}, {"goals": GOALS_DOC}])
def test_goal_lists_are_accepted_bare_or_wrapped(doc):
    goals = parse_goals_document(doc).business_goals
    assert [g["title"] for g in goals] == ["Q1 Sales Target", "Hire a designer"]
    assert goals[0]["metadata"] == {"owner": "kim"}  # no column for it: kept, not dropped
    assert goals[1]["priority"] == 4 and goals[1]["id"].startswith("goal-")
    assert parse_goals_document(doc).business_goals[1]["id"] == goals[1]["id"]  # stable


def test_goals_keyed_by_id_take_their_id_from_the_key():
    goals = parse_goals_document({"g1": {"title": "One"}, "g2": {"title": "Two", "id": "explicit"}})
    assert [g["id"] for g in goals.business_goals] == ["g1", "explicit"]


@pytest.mark.parametrize("doc, where", [
    ([{"title": "ok"}, {"title": "bad", "status": "active"}], "goals[1]"),
    ([{"id": "x", "title": "a"}, {"id": "x", "title": "b"}], "duplicate goal id"),
    ([{"id": "x"}], "title"), ("not goals", "list or an object"), ([7], "goals[0]"),
])
def test_malformed_goal_documents_are_refused_naming_the_place(doc, where):
    with pytest.raises(LegacyImportError) as info:
        parse_goals_document(doc)
    assert where in str(info.value)


# -- the migration ------------------------------------------------------------------------

def test_the_migration_imports_every_kind_with_the_right_types(store, files, tmp_path):
    settings, goals = files
    log = run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "log.json")
    assert log["status"] == "ok"
    assert log["counts"] == {
        "configurations": {"created": 5, "updated": 0, "unchanged": 0, "skipped": 1},
        "app_settings": {"created": 5, "updated": 0, "unchanged": 0, "skipped": 0},
        "business_goals": {"created": 2, "updated": 0, "unchanged": 0, "skipped": 0}}
    assert store.get_config("slack_bot_token") == SECRET
    assert store.get_config_entry("slack_bot_token").sensitive
    assert store.get_app_setting("debug_mode") is True and store.get_app_setting("max_retries") == 3
    assert store.get_app_setting("greeting") == "hi"
    assert store.get_business_goal("sales_q1_2025")["metadata"] == {"owner": "kim"}
    assert {h.changed_by for h in store.config_history("slack_channel")} == {"script:data_migration"}


def test_running_the_migration_twice_creates_no_duplicates_and_no_audit_rows(store, db, files, tmp_path):
    settings, goals = files
    run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "first.json")
    after_first = table_counts(db)
    log = run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "second.json")
    assert table_counts(db) == after_first
    assert all(c["created"] == c["updated"] == 0 for c in log["counts"].values())
    assert [log["counts"][k]["unchanged"] for k in ("configurations", "app_settings", "business_goals")] == [5, 5, 2]


def test_a_changed_legacy_file_updates_only_what_changed(store, db, files, tmp_path):
    settings, goals = files
    run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "first.json")
    audit_before = table_counts(db)["config_audit"]
    changed = json.loads(settings.read_text())
    changed["configurations"]["slack_bot_token"] = SECRET + "-rotated"
    settings.write_text(json.dumps(changed))
    log = run_migration(store, settings_json=settings, log_file=tmp_path / "second.json")
    assert log["keys"]["configurations"]["updated"] == ["slack_bot_token"]
    assert log["counts"]["configurations"]["unchanged"] == 4
    assert table_counts(db)["config_audit"] == audit_before + 1
    assert store.get_config("slack_bot_token") == SECRET + "-rotated"


def test_an_invalid_goal_aborts_the_whole_import_before_anything_is_written(store, db, files, tmp_path):
    settings, goals = files
    goals.write_text(json.dumps(GOALS_DOC + [{"title": "broken", "priority": 11}]))
    with pytest.raises(LegacyImportError, match=r"goals\[2\]"):
        run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "log.json")
    assert table_counts(db) == {"configurations": 0, "app_settings": 0, "business_goals": 0,
                                "config_audit": 0}
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["status"] == "failed" and "goals[2]" in log["error"] and log["backup"] is None


def test_a_dry_run_reports_what_would_change_and_writes_nothing(store, db, files, tmp_path):
    settings, goals = files
    log = run_migration(store, settings_json=settings, goals_json=goals, dry_run=True,
                        log_file=tmp_path / "dry.json", backup_dir=tmp_path / "backup")
    assert log["dry_run"] is True and log["counts"]["configurations"]["created"] == 5
    assert table_counts(db) == {"configurations": 0, "app_settings": 0, "business_goals": 0,
                                "config_audit": 0}
    assert log["backup"] is None and not (tmp_path / "backup").exists()


@pytest.mark.sqlite_only("a backup of the SQLCipher file")
def test_the_database_is_backed_up_before_the_import(store, db, files, tmp_path):
    store.set_config("existing", "before")
    settings, _ = files
    log = run_migration(store, settings_json=settings, log_file=tmp_path / "log.json",
                        backup_dir=tmp_path / "backup")
    backup_dir = Path(log["backup"]["directory"])
    assert backup_dir == (tmp_path / "backup").resolve()
    [entry] = read_manifest(backup_dir)
    assert entry.sha256 == log["backup"]["sha256"]
    verify_backup_entry(backup_dir, entry, db)  # checksum, decryptable with the key, integrity ok
    copy = db.open_file(backup_dir / entry.file, read_only=True)
    try:
        assert [tuple(r) for r in copy.execute("SELECT key, value FROM configurations")] == [
            ("existing", "before")]
    finally:
        copy.close()


@pytest.mark.sqlite_only("a backup of the SQLCipher file")
def test_the_log_records_counts_sources_and_backup_but_no_secret(store, files, tmp_path):
    settings, goals = files
    run_migration(store, settings_json=settings, goals_json=goals, log_file=tmp_path / "log.json")
    text = (tmp_path / "log.json").read_text()
    log = json.loads(text)
    assert log["sources"]["settings_json"]["path"] == str(settings.resolve())
    assert len(log["sources"]["goals_json"]["sha256"]) == 64
    assert log["backup"]["file"] == "settings.db" and Path(log["backup"]["manifest"]).exists()
    assert "slack_bot_token" in log["keys"]["configurations"]["created"]
    assert SECRET not in text
    assert (tmp_path / "log.json").stat().st_mode & 0o077 == 0


@pytest.mark.sqlite_only("the data directory of the SQLCipher file")
def test_default_backup_and_log_locations_are_under_the_data_directory(store, db, files):
    settings, _ = files
    log = run_migration(store, settings_json=settings)
    data_dir = db.path.parent.resolve()
    assert Path(log["backup"]["directory"]).parent == data_dir / "backups"
    assert Path(log["log_file"]).parent == data_dir / "migration_logs" and Path(log["log_file"]).exists()


@pytest.mark.postgresql_only("a database the server backs up")
def test_on_postgresql_no_backup_is_taken_and_the_log_says_to_pg_dump_first(store, db, files, tmp_path):
    settings, _ = files
    log = run_migration(store, settings_json=settings, data_dir=tmp_path / "data")
    text = Path(log["log_file"]).read_text()
    assert log["backup"] is None
    assert log["backup_skipped"] == ("the settings store is on postgresql: back its schema up with "
                                     "pg_dump --schema=settings")
    assert Path(log["log_file"]).parent == (tmp_path / "data" / "migration_logs").resolve()
    assert log["database"]["path"] == db.display_url and SECRET not in text
    assert log["status"] == "ok" and store.get_config("slack_bot_token") == SECRET


def test_a_missing_or_malformed_file_is_a_one_line_import_error(store, tmp_path):
    with pytest.raises(LegacyImportError, match="cannot read"):
        run_migration(store, settings_json=tmp_path / "missing.json", log_file=tmp_path / "log.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LegacyImportError, match="not valid JSON"):
        run_migration(store, goals_json=tmp_path / "bad.json", log_file=tmp_path / "log.json")
    with pytest.raises(LegacyImportError, match="nothing to import"):
        run_migration(store)


def test_parsed_data_can_be_combined_from_both_files():
    data = parse_goals_document(GOALS_DOC, parse_settings_document(SETTINGS_DOC))
    assert isinstance(data, LegacyData)
    assert (len(data.configurations), len(data.app_settings), len(data.business_goals)) == (5, 5, 2)
