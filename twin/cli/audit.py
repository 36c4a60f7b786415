"""``twin audit verify``: the audit trail's hash chain."""

from __future__ import annotations

import click

from .plumbing import EXIT_PROBLEM, CommandError, command, group, load_deployment

audit = group("audit", "Check the audit trail.")


@command(audit, "verify")
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="events read per batch (bounds memory)")
def verify(batch_size: int) -> int:
    """Verify the audit trail's hash chain and name the first tampered event: exit 0 intact,
    1 broken (an edited, deleted or reordered event, or a damaged journal segment), 2 could
    not verify. Reads only: never creates a keyring, a vault or a migration."""
    from compliance.audit import AuditTrail
    from compliance.audit_journal import audit_journal_dir, damaged_segment_files, staged_segment_files

    from ..catalog import open_database

    deployment = load_deployment()
    path = deployment.path_of("privacy_vault")
    if not path.exists():
        raise CommandError(f"no privacy vault at {path}")
    # migrate=False: verifying evidence must not change its schema.
    vault = open_database("privacy_vault", deployment.config, deployment.keyring.database_keys, migrate=False)
    try:
        result = AuditTrail(vault).verify(batch_size=batch_size)
    finally:
        vault.close_all()
    click.echo(result.summary)
    journal = audit_journal_dir(path)
    staged = staged_segment_files(journal)
    if staged:
        click.echo(f"note: {len(staged)} audit journal segment(s) hold events not in the trail yet; "
                   "the service moves them in as it runs, or when it next starts")
    damaged = damaged_segment_files(journal)
    if damaged:
        click.echo(f"audit journal DAMAGED: {len(damaged)} segment(s) failed authentication, events "
                   f"after the damage are missing from the trail: {', '.join(p.name for p in damaged)}")
    return 0 if result.ok and not damaged else EXIT_PROBLEM


COMMAND = audit
