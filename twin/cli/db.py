"""``twin db setup|status|migrate|rollback|info`` (and, from ``db_backups``, backup, verify,
restore): every catalog database, or one with ``--database``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from ..storage.progress import report
from .plumbing import (CommandError, command, confirm, database_option, dry_run_option, group,
                       load_deployment, existing_database, selected_databases, while_no_service_runs,
                       yes_option)

db = group("db", "Create, migrate, roll back, back up, verify, restore and describe the databases.")

ROLLBACK_RISK = ("it keeps using tables and columns that are gone and answers 500 until "
                 "restarted on code that matches the schema")


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@command(db, "setup")
@database_option
def setup(database: str | None) -> int:
    """Create every database (or one) and migrate it to the latest schema; generates a
    development keyring if there is none (never in production). Safe to run again. On
    PostgreSQL run it as the databases' owner: it also records in each learner-twin database
    which one it is (data or vault), so that two settings reaching one database are refused.
    Records the keyring's fingerprints in the vault (never a key): on PostgreSQL every replica
    must serve with that keyring."""
    from compliance import keyring_record

    from ..catalog import LEARNER_DATABASES, mark_learner_databases, open_database, open_learner_databases
    from ..storage.maintenance import info

    deployment = load_deployment(create_keyring=True)
    names = selected_databases(database)
    opened = {}
    if set(LEARNER_DATABASES) <= set(names):
        data, vault = open_learner_databases(deployment.config, deployment.keyring.database_keys,
                                             migrate=True)
        opened = {"digital_twin": data, "privacy_vault": vault}
        try:
            mark_learner_databases(data, vault)
            keyring_record.record(vault, deployment.keyring)
        except BaseException:
            data.close_all()
            vault.close_all()
            raise
    for name in names:
        handle = opened.get(name) or open_database(name, deployment.config, deployment.keyring.database_keys)
        try:
            details = info(handle)
        finally:
            handle.close_all()
        click.echo(_setup_line(name, details))
    return 0


def _setup_line(name: str, details: dict) -> str:
    where = f"{details['journal_mode']:<4} {len(details['tables'])} tables  {details['path']}" \
        if "path" in details else f"{len(details['tables'])} tables  {details['url']}"
    return f"{name:<18} schema v{details['schema_version']:<3} {where}"


@command(db, "status")
@database_option
def status(database: str | None) -> int:
    """Show each database's schema version and pending migrations."""
    from ..catalog import migrator_for

    deployment = load_deployment()
    for name in selected_databases(database):
        with existing_database(deployment, name) as handle:
            state = migrator_for(handle).status()
        pending = "up to date" if state.up_to_date else f"pending {state.pending}"
        click.echo(f"{name:<18} v{state.current} of {state.latest}  {pending}")
    return 0


@command(db, "migrate")
@database_option
@click.option("--to", "target", type=int, help="target version (default: the latest)")
def migrate(database: str | None, target: int | None) -> int:
    """Apply pending migrations (forward only; `twin db rollback` goes down)."""
    from ..catalog import migrator_for

    deployment = load_deployment()
    for name in selected_databases(database):
        with existing_database(deployment, name) as handle:
            migrator = migrator_for(handle)
            applied = migrator.migrate(target, progress=report)
            click.echo(f"{name}: applied {applied or 'nothing'}; now at v{migrator.current_version()}")
    return 0


@command(db, "rollback")
@click.option("--database", metavar="NAME", required=True, help="the database to roll back")
@click.option("--to", "target", type=click.IntRange(min=0), required=True,
              help="the version to go down to (0: empty schema)")
@yes_option("do not ask for confirmation")
@click.option("--force", is_flag=True,
              help=f"drop tables and columns holding rows, and run even while a service runs "
                   f"({ROLLBACK_RISK})")
@click.option("--backup-dir", type=click.Path(path_type=Path), metavar="DIR",
              help="where the backup taken first goes (default <data dir>/backups/"
                   "pre-rollback-<name>-<UTC time>)")
@dry_run_option("print what would be dropped, change nothing")
def rollback(database: str, target: int, yes: bool, force: bool, backup_dir: Path | None,
             dry_run: bool) -> int:
    """Roll a database's schema back (destructive). First prints what it will drop (tables,
    columns, rows), refuses to drop rows without --force, asks for confirmation (or --yes),
    and takes a verified backup; refused while a service runs."""
    from ..catalog import migrator_for, spec_for
    from ..operations.backups import take_backup, verify_set
    from ..storage.downgrade import plan_rollback

    from ..catalog import backend_of

    deployment = load_deployment()
    name = spec_for(database).name
    if backend_of(name, deployment.config) == "postgresql":
        raise CommandError(f"{name} is on PostgreSQL, where `twin db rollback` cannot take its "
                           "backup first: restore the pg_dump taken before `twin db migrate` instead")
    with while_no_service_runs(deployment, [name], force=force, risk=ROLLBACK_RISK), \
            existing_database(deployment, name) as handle:
        migrator = migrator_for(handle)
        plan = plan_rollback(handle, migrator.migrations, target)
        click.echo(f"{name}: roll back v{plan.current} -> v{target} "
                   f"(undo {', '.join(map(str, plan.versions)) or 'nothing'})")
        for line in plan.lines():
            click.echo(f"  {line}")
        if dry_run or not plan.versions:
            click.echo("dry run: nothing changed" if dry_run else "nothing to roll back")
            return 0
        if plan.rows_dropped and not force:
            raise CommandError(f"{name}: the rollback would drop {plan.rows_dropped:,} rows of "
                               "data (listed above); pass --force to drop them")
        if not confirm(f"roll {name} back to v{target}?", yes=yes, word="rollback",
                       refusal="refusing to roll back without confirmation: pass --yes"):
            click.echo("nothing rolled back", err=True)
            return 1
        out = backup_dir or deployment.data_dir / "backups" / f"pre-rollback-{name}-{utc_stamp()}"
        take_backup(deployment.config, deployment.keyring, [name], out, progress=report)
        checked = verify_set(out, [name], deployment.config, deployment.keyring)
        problems = [problem for _, problem in checked if problem]
        if problems:
            raise CommandError(f"the backup taken first failed verification ({problems[0]}); "
                               "nothing rolled back")
        click.echo(f"backup verified: {out}")
        undone = migrator.rollback(target, progress=report)
        click.echo(f"{name}: rolled back {undone}; now at v{migrator.current_version()}")
    return 0


@command(db, "info")
@database_option
@click.option("--json", "as_json", is_flag=True, help="one JSON document instead of a table")
def info_command(database: str | None, as_json: bool) -> int:
    """Sizes, pages, journal mode, schema version and row counts per table."""
    from ..storage.maintenance import info

    deployment = load_deployment()
    details = []
    for name in selected_databases(database):
        with existing_database(deployment, name) as handle:
            details.append(info(handle))
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return 0
    for d in details:
        rows = sum(d["tables"].values())
        if "path" not in d:  # a database on a server
            click.echo(f"{d['name']:<18} v{d['schema_version']:<3} {d['size_bytes']:>12,} bytes  "
                       f"{len(d['tables'])} tables, {rows:,} rows  {d['url']}")
            continue
        click.echo(f"{d['name']:<18} v{d['schema_version']:<3} {d['file_size_bytes']:>12,} bytes "
                   f"(WAL {d['wal_size_bytes']:,})  {d['page_count']:,} pages, {d['freelist_count']:,} "
                   f"free  {len(d['tables'])} tables, {rows:,} rows  {d['path']}")
    return 0


from . import db_backups  # noqa: E402,F401 - adds backup, verify, restore to the group
from . import db_performance  # noqa: E402,F401 - adds performance to the group
from . import db_copy  # noqa: E402,F401 - adds copy to the group
from . import db_recipher  # noqa: E402,F401 - adds recipher to the group

COMMAND = db
