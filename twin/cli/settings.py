"""``twin settings import-legacy``: legacy settings/config and business-goals JSON into
settings.db."""

from __future__ import annotations

from pathlib import Path

import click

from ..storage.progress import report
from .plumbing import CommandError, command, dry_run_option, group, load_deployment

settings = group("settings", "The settings store.")


@command(settings, "import-legacy")
@click.option("--settings-json", type=click.Path(path_type=Path), metavar="FILE",
              help='settings/config JSON: {"configurations": {...}, "app_settings": {...}} or flat '
                   "{key: value}")
@click.option("--goals-json", type=click.Path(path_type=Path), metavar="FILE",
              help='business goals JSON: a list of goals, {"business_goals": [...]} or {id: goal}')
@click.option("--log-file", type=click.Path(path_type=Path), metavar="FILE",
              help="where to write the JSON log (default <data dir>/migration_logs/...)")
@click.option("--backup-dir", type=click.Path(path_type=Path), metavar="DIR",
              help="where to back up settings.db first (default <data dir>/backups/...)")
@dry_run_option("report what would change (in the log and on stdout); write nothing, no backup")
@click.option("--actor", default="script:data_migration", show_default=True,
              help="recorded as changed_by in the configuration audit trail")
def import_legacy(settings_json: Path | None, goals_json: Path | None, log_file: Path | None,
                  backup_dir: Path | None, dry_run: bool, actor: str) -> int:
    """Import legacy JSON files idempotently (a second run changes nothing): backs settings.db
    up first and writes a JSON log of what it did. The accepted shapes are documented in
    twin/settings_store/legacy_import.py."""
    from ..catalog import open_database
    from ..settings_store import SettingsError, SettingsStore
    from ..settings_store.legacy_import import run_migration

    if settings_json is None and goals_json is None:
        raise CommandError("nothing to import: give --settings-json and/or --goals-json")
    deployment = load_deployment()
    # The database may be new (importing into a fresh deployment); the keyring may not.
    db = open_database("settings", deployment.config, deployment.keyring.database_keys)
    try:
        store = SettingsStore.from_keyring(db, deployment.keyring, actor=actor)
        doc = run_migration(store, settings_json=settings_json, goals_json=goals_json,
                            log_file=log_file, backup_dir=backup_dir, dry_run=dry_run,
                            progress=report, data_dir=deployment.data_dir)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    finally:
        db.close_all()
    prefix = "dry run, nothing written: " if dry_run else ""
    for kind, counts in doc["counts"].items():
        click.echo(f"{prefix}{kind:<15} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    if doc["backup"]:
        click.echo(f"backup: {doc['backup']['directory']}")
    elif doc.get("backup_skipped"):
        click.echo(f"no backup taken: {doc['backup_skipped']}")
    click.echo(f"log: {doc['log_file']}")
    return 0


COMMAND = settings
