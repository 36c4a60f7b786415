"""``twin db rollback``: it says what it will drop, refuses to drop rows without --force, asks
for confirmation, and takes a verified backup before anything goes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli_support import operator_env
from compliance.audit import Actor
from compliance.keyring import Keyring
from compliance.vault_schema import MIGRATIONS as VAULT_MIGRATIONS
from twin.catalog import open_database
from twin.cli import cli
from twin.config import Config
from twin.learners.schema import MIGRATIONS as DATA_MIGRATIONS
from twin.runtime import Runtime

ADMIN = Actor("t", "admin")
DATA_LATEST = DATA_MIGRATIONS[-1].version
ROLLBACK = ["db", "rollback", "--database", "digital_twin", "--to", "1"]


@pytest.fixture
def env(tmp_path):
    env = operator_env(tmp_path)
    Keyring.generate().save(tmp_path / "keys" / "keyring.json")
    rt = Runtime.open(Config.from_env(env))
    for i in range(3):
        rt.profiles.create(ADMIN, None, {"user_id": f"u-{i}", "retention_days": 30 + i})
    rt.holds.place(rt.hasher.hash("u-0"), "litigation", None, "dpo")
    rt.close()
    return env


def _empty_what_rolling_the_vault_back_drops(env) -> None:
    """The compact audit trail (gone below v6) with the count of its interned values' deletes
    (below v11), and the keys by key id (below v9: leased ones)."""
    config = Config.from_env(env)
    vault = open_database("privacy_vault", config, Keyring.load(config.keyring_path, production=False).database_keys)
    try:
        for table in ("audit_log", "audit_actors", "audit_subjects", "audit_resources", "audit_term_generation"):
            vault.execute(f"DELETE FROM {table}")
        vault.execute("DELETE FROM subject_keys WHERE user_id_hash IS NULL OR key_id != user_id_hash")
    finally:
        vault.close_all()


def test_rolling_the_vault_back_past_compact_audit_events_lists_them_and_needs_force(env):
    run = CliRunner().invoke(cli, ["db", "rollback", "--database", "privacy_vault", "--to", "5", "--yes"],
                             env=env)
    assert run.exit_code == 2
    assert any(line.startswith("  drop table audit_log (") and not line.endswith("(0 rows)")
               for line in run.stdout.splitlines()), run.stdout
    assert "pass --force" in run.stderr


def _state(env) -> tuple[int, int]:
    """(schema version, legal holds) of digital_twin, read without migrating it."""
    config = Config.from_env(env)
    db = open_database("digital_twin", config,
                       Keyring.load(config.keyring_path, production=False).database_keys, migrate=False)
    try:
        version = db.query_one("SELECT max(version) FROM schema_version")[0]
        holds = db.query_one("SELECT count(*) FROM legal_holds")[0] if version >= 2 else 0
        return version, holds
    finally:
        db.close_all()


def test_the_plan_lists_tables_and_columns_with_their_rows_and_nothing_changes_without_force(env):
    run = CliRunner().invoke(cli, ROLLBACK + ["--yes"], env=env)
    assert run.exit_code == 2
    assert run.stdout.splitlines() == [
        f"digital_twin: roll back v{DATA_LATEST} -> v1 (undo {', '.join(map(str, range(DATA_LATEST, 1, -1)))})",
        "  drop table consents (0 rows)",
        "  drop table erasure_generation (0 rows)",
        "  drop table evidence (0 rows)",
        "  drop table legal_holds (1 rows)",
        "  drop table skill_parameters (0 rows)",
        "  drop table skill_parameters_current (0 rows)",
        "  drop column knowledge_states.carried_over (0 rows with a value)",
        "  drop column knowledge_states.model_checkpoint (0 rows with a value)",
        "  drop column knowledge_states.parameters_version (0 rows with a value)",
        "  drop column knowledge_states.review_due (0 rows with a value)",
        "  drop column knowledge_states.source (0 rows with a value)",
        "  drop column learning_profiles.retention_days (3 rows with a value)",
        "  drop column learning_profiles.row_version (3 rows with a value)",
        "  drop column learning_profiles.subject_key_id (3 rows with a value)",
        "  drop column learning_sessions.row_version (0 rows with a value)",
    ]
    assert run.stderr.strip() == ("twin: error: digital_twin: the rollback would drop 10 rows of data "
                                  "(listed above); pass --force to drop them")
    assert _state(env) == (DATA_LATEST, 1)


def test_a_dry_run_prints_the_plan_and_changes_nothing(env, tmp_path):
    run = CliRunner().invoke(cli, ROLLBACK + ["--dry-run"], env=env)
    assert run.exit_code == 0 and "drop table legal_holds (1 rows)" in run.stdout
    assert "dry run: nothing changed" in run.stdout
    assert _state(env) == (DATA_LATEST, 1)
    assert not (tmp_path / "data" / "backups").exists()
    assert [p.name for p in (tmp_path / "data").iterdir() if "rollback-plan" in p.name] == []


def test_without_a_terminal_it_needs_yes(env):
    run = CliRunner().invoke(cli, ROLLBACK + ["--force"], env=env)
    assert run.exit_code == 2 and "pass --yes" in run.stderr
    assert _state(env) == (DATA_LATEST, 1)


def test_forced_and_confirmed_it_backs_up_first_and_the_backup_brings_the_hold_back(env, tmp_path):
    run = CliRunner().invoke(cli, ROLLBACK + ["--force", "--yes"], env=env)
    assert run.exit_code == 0, run.output
    [backup] = (tmp_path / "data" / "backups").glob("pre-rollback-digital_twin-*")
    assert f"backup verified: {backup}" in run.stdout
    assert _state(env) == (1, 0)
    assert CliRunner().invoke(cli, ["db", "verify", "--backup-check", str(backup),
                                    "--database", "digital_twin"], env=env).exit_code == 0
    restored = CliRunner().invoke(cli, ["db", "restore", str(backup), "--database", "digital_twin",
                                        "--yes", "--force"], env=env)
    assert restored.exit_code == 0, restored.output
    assert _state(env) == (DATA_LATEST, 1)


def test_a_rollback_that_drops_no_data_needs_no_force(env):
    _empty_what_rolling_the_vault_back_drops(env)  # past vault v6 and v9 (tested below)
    run = CliRunner().invoke(cli, ["db", "rollback", "--database", "privacy_vault", "--to", "2", "--yes"],
                             env=env)
    assert run.exit_code == 0, run.output
    assert "  drop column api_tokens.expires_at (0 rows with a value)" in run.stdout
    undone = sorted((m.version for m in VAULT_MIGRATIONS if m.version > 2), reverse=True)
    assert f"privacy_vault: rolled back {undone}; now at v2" in run.stdout
