"""Seed 001's own usage examples, run as written (only the import adapted: ``from src.database
import db_manager`` is ``from twin.settings_store import db_manager``), against the settings
database configured through the environment, on each backend (a real SQLCipher file; the
settings schema of a real PostgreSQL database by SETTINGS_STORAGE_BACKEND and
TWIN_DATABASE_URL), with real field keys."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from storage_backends import database_url
from twin.storage import open_keyed

SQLITE_HEADER = b"SQLite format 3\x00"
URL_PASSWORD = "pw-NEVER-SHOWN-42"


@pytest.fixture(autouse=True)
def deployment(seed_deployment, backend, request, monkeypatch):
    if backend == "postgresql":
        url = database_url(request.getfixturevalue("pg_server").create_database())
        url = url.replace("postgres@", f"postgres:{URL_PASSWORD}@")  # the test server trusts; never shown
        monkeypatch.setenv("SETTINGS_STORAGE_BACKEND", "postgresql")
        monkeypatch.setenv("TWIN_DATABASE_URL", url)
        monkeypatch.setenv("TWIN_DB_POOL_SIZE", "1")
    yield seed_deployment
    from twin.settings_store.manager import reset_default_manager

    reset_default_manager()


def test_configuration_management(capsys):
    from twin.settings_store import db_manager

    # Get configuration with fallback
    api_key = db_manager.get_config('openai_api_key', 'fallback_key')

    # Set configuration
    db_manager.set_config(
        key='new_feature_enabled',
        value='true',
        category='features',
        description='Enable new AI feature',
        is_sensitive=False
    )

    # Get all configs by category
    slack_configs = db_manager.get_configs_by_category('slack')

    assert api_key == "fallback_key"
    assert slack_configs == []
    [feature] = db_manager.get_configs_by_category('features')
    assert (feature["key"], feature["value"], feature["description"]) == \
        ("new_feature_enabled", "true", "Enable new AI feature")


def stored_value(key: str, database_key: bytes) -> bytes:
    """A configuration's value as the database holds it, read outside the service."""
    url = os.environ.get("TWIN_DATABASE_URL")
    if url is None:
        conn = open_keyed(Path("data/settings.db"), database_key, read_only=True)
        try:
            value = conn.execute("SELECT value FROM configurations WHERE key = ?", (key,)).fetchone()[0]
            return value.encode() if isinstance(value, str) else bytes(value)
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return bytes(conn.execute("SELECT value FROM settings.configurations WHERE key = %s",
                                  (key,)).fetchone()[0])


def test_a_sensitive_configuration_is_masked_by_category_and_encrypted_on_disk(deployment):
    from twin.settings_store import db_manager

    db_manager.set_config(key='slack_bot_token', value='xoxb-SECRET-123', category='slack',
                          is_sensitive=True)
    db_manager.set_config(key='slack_channel', value='#ops-PLAIN', category='slack')

    assert db_manager.get_config('slack_bot_token') == 'xoxb-SECRET-123'
    assert [c["value"] for c in db_manager.get_configs_by_category('slack')] == ["***", "#ops-PLAIN"]
    assert b"xoxb-SECRET-123" not in stored_value('slack_bot_token', deployment.database_key)
    assert stored_value('slack_channel', deployment.database_key) == b"#ops-PLAIN"  # the read sees values


def test_thread_context_management():
    from twin.settings_store import db_manager

    # Save conversation context
    db_manager.save_thread_context(
        thread_key='C123:ts456',
        channel_id='C123',
        thread_ts='ts456',
        messages=['User: Hello', 'Bot: Hi there']
    )

    # Retrieve context
    context = db_manager.get_thread_context('C123:ts456')
    if context:
        messages = context['messages']
        # Continue conversation...

    assert messages == ['User: Hello', 'Bot: Hi there']
    assert (context['channel_id'], context['thread_ts']) == ('C123', 'ts456')


def test_business_goals():
    from twin.settings_store import db_manager

    # Create business goal
    goal_data = {
        'id': 'sales_q1_2025',
        'title': 'Q1 Sales Target',
        'description': 'Achieve $50k in Q1 sales',
        'area': 'sales',
        'status': 'in_progress',
        'priority': 4,
        'weekly_actions': ['Follow up with leads', 'Send proposals'],
        'success_metrics': {'revenue': '$50000'}
    }
    db_manager.save_business_goal(goal_data)

    # Query goals
    active_goals = db_manager.get_business_goals(status='in_progress')
    sales_goals = db_manager.get_business_goals(area='sales')

    # NEW: Database queries
    business_goals = db_manager.get_business_goals()

    assert [g['id'] for g in active_goals] == [g['id'] for g in sales_goals] == ['sales_q1_2025']
    assert business_goals[0]['weekly_actions'] == ['Follow up with leads', 'Send proposals']
    assert business_goals[0]['success_metrics'] == {'revenue': '$50000'}


def test_application_settings():
    from twin.settings_store import db_manager

    # Set different types of settings
    db_manager.set_app_setting('max_retries', 3)  # integer
    db_manager.set_app_setting('debug_mode', True)  # boolean
    db_manager.set_app_setting('features', {'ai_mode': True})  # JSON

    # Get with automatic type conversion
    max_retries = db_manager.get_app_setting('max_retries')  # returns int(3)
    debug_enabled = db_manager.get_app_setting('debug_mode')  # returns bool(True)

    assert max_retries == 3 and type(max_retries) is int
    assert debug_enabled is True
    assert db_manager.get_app_setting('features') == {'ai_mode': True}


def test_performance_tracking_and_monitoring(capsys):
    from twin.settings_store import db_manager

    # Log performance metrics
    db_manager.log_performance_metric(
        metric_name='slack_response_time',
        metric_value=0.85,
        metric_unit='seconds',
        additional_data={'endpoint': '/slack', 'user_count': 5}
    )
    db_manager.log_performance_metric(metric_name='response_time', metric_value=0.5)
    db_manager.log_performance_metric(metric_name='response_time', metric_value=1.5)

    # Query performance data
    recent_metrics = db_manager.get_performance_metrics('slack_response_time', hours=24)

    # Get database statistics
    db_info = db_manager.get_database_info()
    print(f"Database size: {db_info['database_size_bytes']} bytes")
    print(f"Total records: {db_info['total_records']}")

    # Monitor performance metrics
    metrics = db_manager.get_performance_metrics(hours=24)
    avg_response_time = sum(m['metric_value'] for m in metrics if m['metric_name'] == 'response_time') / len(metrics)

    assert [(m['metric_value'], m['metric_unit'], m['additional_data']) for m in recent_metrics] == \
        [(0.85, 'seconds', {'endpoint': '/slack', 'user_count': 5})]
    assert avg_response_time == pytest.approx(2.0 / 3)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Database size: {settings_size()} bytes", "Total records: 3"]


def settings_size() -> int:
    """The settings database's size as found outside the service: the file and its WAL, or
    what the server reports for every table of the settings schema."""
    url = os.environ.get("TWIN_DATABASE_URL")
    if url is None:
        return os.path.getsize("data/settings.db") + os.path.getsize("data/settings.db-wal")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT sum(pg_total_relation_size(format('settings.%I', tablename))) "
                                "FROM pg_tables WHERE schemaname = 'settings'").fetchone()[0])


def test_environment_variable_and_in_memory_replacements():
    from twin.settings_store import db_manager

    with pytest.raises(ValueError, match="not configured"):
        # NEW: Database configuration
        OPENAI_API_KEY = db_manager.get_config('openai_api_key')
        if not OPENAI_API_KEY:
            raise ValueError("OpenAI API key not configured in database")

    db_manager.set_config('openai_api_key', 'sk-test', category='ai', is_sensitive=True)
    OPENAI_API_KEY = db_manager.get_config('openai_api_key')
    if not OPENAI_API_KEY:
        raise ValueError("OpenAI API key not configured in database")

    # NEW: Persistent database storage
    def get_thread_context(thread_key):
        return db_manager.get_thread_context(thread_key)

    assert OPENAI_API_KEY == 'sk-test'
    assert get_thread_context('C9:ts1') is None
    db_manager.save_thread_context('C9:ts1', 'C9', 'ts1', ['User: hi'])
    assert get_thread_context('C9:ts1')['messages'] == ['User: hi']


@pytest.mark.sqlite_only("a copy of the SQLCipher file")
def test_backups_are_encrypted_copies_at_the_default_or_the_given_path(capsys, deployment):
    from twin.settings_store import db_manager

    db_manager.set_config('region', 'eu-west-1')
    # Manual backup
    backup_path = db_manager.backup_database()
    print(f"Database backed up to: {backup_path}")

    # Automated backup (can be scheduled)
    def daily_backup():
        timestamp = datetime.now().strftime("%Y%m%d")
        backup_path = f"backups/opsbrain_backup_{timestamp}.db"
        return db_manager.backup_database(backup_path)

    daily = daily_backup()

    assert capsys.readouterr().out == f"Database backed up to: {backup_path}\n"
    assert Path(backup_path).parent == Path("data/backups").resolve() or \
        Path(backup_path).parent.resolve() == Path("data/backups").resolve()
    assert daily == f"backups/opsbrain_backup_{datetime.now():%Y%m%d}.db"
    assert sorted(os.listdir("backups")) == [Path(daily).name]
    for copy in (backup_path, daily):
        assert not Path(copy).read_bytes().startswith(SQLITE_HEADER)
        conn = open_keyed(copy, deployment.database_key, read_only=True)
        try:
            assert conn.execute("SELECT value FROM configurations WHERE key = 'region'").fetchone()[0] == "eu-west-1"
        finally:
            conn.close()


def test_cleanup_operations_delete_only_expired_threads(capsys):
    from twin.settings_store import DatabaseConfig, DatabaseManager, db_manager

    short_lived = DatabaseManager(DatabaseConfig(thread_ttl_hours=1e-9))
    short_lived.save_thread_context('C1:old', 'C1', 'old', ['gone'])
    db_manager.save_thread_context('C1:new', 'C1', 'new', ['kept'])

    # Manual cleanup of expired threads
    cleaned = db_manager.cleanup_expired_threads()
    print(f"Cleaned up {cleaned} expired thread contexts")

    # Scheduled cleanup (can be run daily)
    def cleanup_old_data():
        # Cleanup expired threads
        db_manager.cleanup_expired_threads()

    cleanup_old_data()

    assert capsys.readouterr().out == "Cleaned up 1 expired thread contexts\n"
    assert db_manager.get_thread_context('C1:old') is None
    assert db_manager.get_thread_context('C1:new')['messages'] == ['kept']
    assert db_manager.get_database_info()['tables']['thread_contexts'] == 1
    short_lived.close()


def test_troubleshooting_and_the_health_check(capsys):
    from twin.settings_store import db_manager

    # Issue: Database is locked
    # Solution: Ensure connections are properly closed
    with db_manager.get_connection() as conn:
        # Do database operations
        pass  # Connection auto-closed

    # Check database size and optimize
    info = db_manager.get_database_info()
    if info['database_size_bytes'] > 100_000_000:  # 100MB
        # Consider cleanup or archiving
        db_manager.cleanup_expired_threads()

    # Database health check
    def health_check():
        try:
            # Test basic operations
            db_manager.set_config('health_check', 'ok')
            value = db_manager.get_config('health_check')
            db_manager.delete_config('health_check')

            if value == 'ok':
                print("✅ Database is healthy")
                return True
        except Exception as e:
            print(f"❌ Database health check failed: {e}")
            return False

    assert health_check() is True
    assert capsys.readouterr().out == "✅ Database is healthy\n"
    assert db_manager.get_config('health_check') is None


def test_get_connection_rolls_back_when_the_block_raises():
    from twin.settings_store import db_manager

    with pytest.raises(RuntimeError):
        with db_manager.get_connection() as conn:
            conn.execute("INSERT INTO performance_metrics (metric_name, metric_value) VALUES ('x', 1)")
            raise RuntimeError("boom")
    assert db_manager.get_performance_metrics('x') == []


@pytest.mark.postgresql_only("the server's database is backed up with the server's tools")
def test_on_postgresql_backup_database_says_in_one_line_to_use_pg_dump():
    from twin.settings_store import SettingsError, db_manager

    with pytest.raises(SettingsError, match="^backup_database copies the SQLCipher file; the settings "
                                            "store is on postgresql: back up its schema with "
                                            "pg_dump --schema=settings$"):
        db_manager.backup_database()
    assert not Path("data/backups").exists()


def test_the_database_info_names_where_the_settings_live_and_never_a_password():
    from twin.settings_store import db_manager

    db_manager.set_config('region', 'eu-west-1')
    info = db_manager.get_database_info()

    url = os.environ.get("TWIN_DATABASE_URL")
    assert info["database_path"] == (str(Path("data/settings.db").resolve()) if url is None
                                     else url.replace(f"postgres:{URL_PASSWORD}@", ""))
    assert info["tables"]["configurations"] == 1 and info["schema_version"] == 3
    assert URL_PASSWORD not in repr(info)
