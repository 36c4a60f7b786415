"""``twin db backup|verify|restore``: encrypted backup sets with a checksum manifest."""

from __future__ import annotations

from pathlib import Path

import click

from ..storage.progress import report
from .db import db, utc_stamp
from .plumbing import (EXIT_PROBLEM, CommandError, Deployment, command, database_option,
                       dry_run_option, existing_database, load_deployment, selected_databases,
                       while_no_service_runs, yes_option)

RESTORE_RISK = ("it keeps writing to the replaced (deleted) files, so what it writes from now on "
                "is lost, and it serves the old data until restarted")


def _backups_root(deployment: Deployment) -> Path:
    return deployment.data_dir / "backups"


@command(db, "backup")
@database_option
@click.option("--out", type=click.Path(path_type=Path), metavar="DIR",
              help="backup directory (default <data dir>/backups/<UTC time>)")
def backup(database: str | None, out: Path | None) -> int:
    """Back up the databases (online: the service keeps running) into an encrypted backup set
    whose manifest records checksums and which keys the set needs (fingerprints, never keys)."""
    from ..operations.backups import take_backup

    deployment = load_deployment()
    names = [n for n in selected_databases(database) if deployment.path_of(n).exists()]
    if not names:
        raise CommandError(f"{deployment.path_of(database) if database else deployment.data_dir}: "
                           "no database to back up (`twin db setup` creates them)")
    for missing in sorted(set(selected_databases(database)) - set(names)):
        click.echo(f"{missing:<18} no database file, not backed up ({deployment.path_of(missing)})",
                   err=True)
    out = out or _backups_root(deployment) / utc_stamp()
    taken = take_backup(deployment.config, deployment.keyring, names, out, progress=report)
    for entry in taken.entries:
        click.echo(f"{entry.name:<18} {entry.size:>12,} bytes  sha256 {entry.sha256[:16]}…  "
                   f"v{entry.schema_version}")
    if taken.archive_segments is not None:
        size = sum(r["size"] for r in taken.archive_segments)
        click.echo(f"{'audit archive':<18} {size:>12,} bytes  {len(taken.archive_segments)} segment(s), "
                   "each checked against the vault's index")
    versions = ", ".join(f"v{v}" for v in taken.field_key_versions) or "none"
    click.echo(f"backup set written to {out} (database key {deployment.keyring.database_key_fingerprint}, "
               f"field keys {versions})")
    return 0


@command(db, "verify")
@database_option
@click.option("--backup-check", is_flag=False, flag_value="latest", default=None, metavar="DIR",
              help="verify a backup set instead (default: the newest under <data dir>/backups)")
def verify(database: str | None, backup_check: str | None) -> int:
    """Verify the live databases (decryptable, integrity_check, schema up to date) or a backup
    set (checksums, integrity, keys it needs). Exit 1 when a problem is found."""
    deployment = load_deployment()
    names = selected_databases(database)
    if backup_check:
        problems = _check_backup(deployment, backup_check, names)
    else:
        problems = _check_live(deployment, names)
    click.echo("all checks passed" if not problems else f"{problems} problem(s) found")
    return EXIT_PROBLEM if problems else 0


def _check_live(deployment: Deployment, names: list[str]) -> int:
    from ..catalog import migrator_for, open_database
    from ..storage import StorageError
    from ..storage.maintenance import integrity_check

    problems = 0
    for name in names:
        path = deployment.path_of(name)
        if not path.exists():  # opening would create an empty file and report it as "v0"
            click.echo(f"FAIL {name}: missing ({path})")
            problems += 1
            continue
        handle = None
        try:
            handle = open_database(name, deployment.config, deployment.keyring.database_keys, migrate=False)
            result = integrity_check(handle)
            state = migrator_for(handle).status()
        except StorageError as exc:
            click.echo(f"FAIL {name}: {exc}")
            problems += 1
            continue
        finally:
            if handle is not None:
                handle.close_all()
        ok = result == ["ok"] and state.up_to_date
        problems += not ok
        detail = "integrity ok" if result == ["ok"] else f"integrity: {'; '.join(result[:3])}"
        click.echo(f"{'ok  ' if ok else 'FAIL'} {name:<18} {detail}; "
                   f"schema v{state.current}/{state.latest}")
    return problems


def _check_backup(deployment: Deployment, target: str, names: list[str]) -> int:
    from ..operations.backups import verify_set

    directory = _latest_backup(deployment) if target == "latest" else Path(target)
    results = verify_set(directory, names, deployment.config, deployment.keyring)
    if not [r for r in results if r[0] != "keys"]:
        raise CommandError(f"{directory}: the manifest lists none of the selected databases")
    for name, problem in results:
        if problem is None:
            click.echo(f"ok   backup {name:<18} checksum and integrity ok")
        else:
            click.echo(f"FAIL backup {problem}")
    return sum(1 for _, problem in results if problem)


def _latest_backup(deployment: Deployment) -> Path:
    root = _backups_root(deployment)
    sets = sorted(p for p in root.glob("*") if (p / "manifest.json").exists())
    if not sets:
        raise CommandError(f"no backup sets under {root}; pass a directory")
    return sets[-1]


@command(db, "restore")
@click.argument("directory", type=click.Path(path_type=Path))
@database_option
@yes_option("confirm: a restore replaces the live databases")
@click.option("--force", is_flag=True,
              help="restore only one of digital_twin/privacy_vault (subjects created after the "
                   f"backup lose their data keys), and run even while a service runs ({RESTORE_RISK})")
@click.option("--tombstones", "logs", multiple=True, metavar="FILE",
              type=click.Path(path_type=Path, dir_okay=False),
              help="an erasure log (`twin db erasure-log`) whose tombstones the restored vault "
                   "keeps too; needed when the live vault is lost (repeatable)")
@dry_run_option("check the set (checksums, keys) and list what would be replaced; change nothing")
def restore(directory: Path, database: str | None, yes: bool, force: bool, logs: tuple[Path, ...],
            dry_run: bool) -> int:
    """Replace the live databases with a backup set. Refused while a service runs. Erasure
    tombstones of the live vault (and of the erasure logs given) are carried into the restored
    vault, and every tombstone is re-applied before anything can be served; refused when the
    live vault cannot be read and no erasure log is given (unless --force)."""
    from ..operations.backups import carried_tombstones, plan_restore, restore_set

    if not yes and not dry_run:
        raise CommandError("a restore replaces live databases: stop the service and pass --yes")
    deployment = load_deployment()
    names = selected_databases(database)
    with while_no_service_runs(deployment, names, force=force, risk=RESTORE_RISK):
        entries = plan_restore(directory, names, deployment.config, deployment.keyring,
                               allow_half_pair=force)
        carried = (carried_tombstones(deployment.config, deployment.keyring, logs,
                                      without_live_vault=force)
                   if "privacy_vault" in [e.name for e in entries] else [])
        if dry_run:
            for entry in entries:
                click.echo(f"{entry.name:<18} would be restored from {directory} (verified)")
            click.echo(f"{len(carried)} erasure tombstone(s) would be carried")
            return 0
        result = restore_set(directory, entries, deployment.config, deployment.keyring,
                             tombstones=carried, progress=report)
    for name in result["restored"]:
        click.echo(f"{name:<18} restored from {directory}")
    if result["archive_segments"] is not None:
        click.echo(f"{'audit archive':<18} restored from {directory} ({result['archive_segments']} segment(s))")
    click.echo(f"{result['tombstones_carried']} erasure tombstone(s) carried; every tombstone re-applied")
    return 0


@command(db, "erasure-log")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="where to write it: keep it outside the backup sets (another disk or host)")
def erasure_log(out: Path) -> int:
    """Write the vault's erasure tombstones (keyed hashes, no user ids) to an authenticated
    erasure log, for `twin db restore --tombstones` and `twin db reapply-tombstones` when the
    live vault is lost or rewound too."""
    from ..operations.erasure_log import vault_tombstones, write_log

    deployment = load_deployment()
    with existing_database(deployment, "privacy_vault") as vault:
        count = write_log(out, vault_tombstones(vault), deployment.keyring)
    click.echo(f"{count} erasure tombstone(s) written to {out}")
    return 0


@command(db, "reapply-tombstones")
@click.option("--tombstones", "logs", multiple=True, metavar="FILE",
              type=click.Path(path_type=Path, dir_okay=False),
              help="an erasure log (`twin db erasure-log`) whose tombstones the vault takes first "
                   "(repeatable)")
def reapply_tombstones(logs: tuple[Path, ...]) -> int:
    """After the databases were restored by other means (PostgreSQL: pg_restore, or a base
    backup and WAL replayed to a point in time): merge the erasure logs' tombstones into the
    vault and re-apply every tombstone, before any service starts. Refused while one runs."""
    from ..operations.backups import reapply_in_place

    deployment = load_deployment()
    with while_no_service_runs(deployment, ["digital_twin", "privacy_vault"], force=False,
                               risk="it could serve an erased learner meanwhile"):
        result = reapply_in_place(deployment.config, deployment.keyring, logs)
    click.echo(f"{result['tombstones_carried']} erasure tombstone(s) from the logs merged; "
               "every tombstone re-applied")
    return 0
