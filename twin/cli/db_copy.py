"""``twin db copy --to postgresql``: move an SQLCipher deployment's learner pair into an empty
PostgreSQL pair (``TWIN_DATABASE_URL``, ``TWIN_VAULT_DATABASE_URL``), verified and resumable."""

from __future__ import annotations

import click

from ..storage.progress import report
from .db import db
from .plumbing import CommandError, command, load_deployment


@command(db, "copy")
@click.option("--to", "to", type=click.Choice(["postgresql"]), required=True,
              help="the backend to copy into (its URLs: TWIN_DATABASE_URL, TWIN_VAULT_DATABASE_URL)")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="rows per committed batch (an interrupted copy resumes after the last one)")
def copy_command(to: str, batch_size: int) -> int:
    """Copy digital_twin and privacy_vault from the SQLCipher files into an empty PostgreSQL
    pair, set up as `twin db setup` would, then verify every table's count and the audit chain.
    Refused while a service runs on the files or on the target. Run it again after an
    interruption: it goes on where it stopped. The files are left as they are."""
    from ..catalog import postgres_settings_of
    from ..operations.copy_to_server import PAIR, copy_pair, on_backend, prepare_source, set_up_target
    from ..storage.postgresql.service_guard import PostgresServiceGuard
    from ..storage.service_guard import FileServiceGuard, FilesInUseError, Holder

    deployment = load_deployment()
    source, target = on_backend(deployment.config, "sqlcipher"), on_backend(deployment.config, to)
    for name in PAIR:
        if not deployment.path_of(name).exists():
            raise CommandError(f"{deployment.path_of(name)}: no such database ({name}) to copy")
    settings = postgres_settings_of("privacy_vault", target)  # a bad URL fails before any work
    holder = Holder("command", "twin db copy")
    try:
        with FileServiceGuard(deployment.paths(PAIR)).exclusive(holder):
            prepare_source(source)
            set_up_target(target, deployment.keyring)
            registry = PostgresServiceGuard(settings, interval=deployment.config.replica_heartbeat_seconds)
            with registry.exclusive(holder):
                result = copy_pair(source, target, deployment.keyring, batch=batch_size,
                                   progress=report)
    except FilesInUseError as exc:
        raise CommandError(str(exc)) from None
    for name, tables in result.tables.items():
        for table in tables:
            click.echo(f"{name:<14} {table.table:<24} {table.target_rows:>10,} rows  verified")
    click.echo(f"audit trail: {result.audit_events:,} events, chain verified on {to}; "
               f"copied into {settings.display_url} and its data pair")
    return 0
