"""``twin db recipher``: rewrite SQLCipher files of former page settings under the current
ones (``twin.storage.recipher``), verified, swapped in while no service runs."""

from __future__ import annotations

from contextlib import ExitStack

import click

from ..storage.progress import report
from .db import db
from .plumbing import (CommandError, command, database_option, dry_run_option, existing_database,
                       load_deployment, selected_databases, service_guard)


@command(db, "recipher")
@database_option
@dry_run_option("print each file's settings, change nothing")
def recipher_command(database: str | None, dry_run: bool) -> int:
    """Rewrite every SQLCipher database (or one) still in former page settings (8192-byte pages
    with HMAC-SHA256, or 4096-byte pages with HMAC-SHA512) under the current ones (4096-byte
    pages, HMAC-SHA256): exported into a new file under the same key, verified (settings,
    integrity, every table's rows, schema version), then renamed over the original. Refused while a service runs on the files. The
    original is not kept (take a backup first if you want one)."""
    from ..catalog import backend_of
    from ..storage.recipher import recipher
    from ..storage.service_guard import FilesInUseError, Holder

    deployment = load_deployment()
    names = [n for n in selected_databases(database) if backend_of(n, deployment.config) == "sqlcipher"
             and deployment.path_of(n).exists()]
    with ExitStack() as held:
        try:  # no --force: a service writing to the original would lose those writes in the swap
            held.enter_context(service_guard(deployment, names).exclusive(Holder("command", "twin db recipher")))
        except FilesInUseError as exc:
            raise CommandError(f"{exc} (stop it first)") from None
        for name in names:
            with existing_database(deployment, name) as handle:
                done = recipher(handle, dry_run=dry_run, progress=report)
            if dry_run:
                click.echo(f"{name:<18} {done.before}")
            elif done.changed:
                click.echo(f"{name:<18} {done.before} -> {done.after}: {done.tables} tables, "
                           f"{done.rows:,} rows verified")
            else:
                click.echo(f"{name:<18} {done.after} already")
    if dry_run:
        click.echo("dry run: nothing changed")
    return 0
