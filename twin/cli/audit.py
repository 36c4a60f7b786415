"""``twin audit verify``: the audit trail's hash chain; ``twin audit archive``: old events into
archive segments."""

from __future__ import annotations

import click

from .plumbing import EXIT_PROBLEM, CommandError, command, group, load_deployment

audit = group("audit", "Check and archive the audit trail.")


@command(audit, "verify")
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="events read per batch (bounds memory)")
@click.option("--full", is_flag=True,
              help="walk the whole chain, not only what follows the newest verified seal")
def verify(batch_size: int, full: bool) -> int:
    """Verify the audit trail's hash chain and name the first tampered event: exit 0 intact,
    1 broken (an edited, deleted or reordered event, a forged seal, or a damaged journal
    segment), 2 could not verify. By default only the events after the newest seal a past
    verification marked (and that sealed event) are read; --full reads every event. Writes only
    the HMAC'd marks of the seals it found sound: never a keyring, a vault or a migration."""
    from compliance.audit import AuditTrail
    from compliance.audit_seals import SealBook
    from compliance.audit_journal import audit_journal_dir, damaged_segment_files, staged_segment_files

    from compliance.field_crypto import FieldCipher

    from ..catalog import audit_archive, backend_of
    from .plumbing import existing_database

    deployment = load_deployment()
    on_server = backend_of("privacy_vault", deployment.config) == "postgresql"
    path = deployment.path_of("privacy_vault")
    if not on_server and not path.exists():
        raise CommandError(f"no privacy vault at {path}")
    # Not migrated: verifying evidence must not change its schema.
    with existing_database(deployment, "privacy_vault") as vault:
        keyring = deployment.keyring
        seals = SealBook(keyring.audit_seal_key, deployment.config.audit_seal_every)
        archive = audit_archive(vault, deployment.config, FieldCipher(keyring.field_keys, keyring.active_field_key),
                                seals)
        result = AuditTrail(vault, seals=seals, archive=archive).verify(batch_size=batch_size, full=full)
        staged_rows = vault.query_one("SELECT count(*) FROM audit_staged_events")[0] if on_server else 0
    click.echo(result.summary)
    if staged_rows:
        click.echo(f"note: {staged_rows} audit event(s) staged in the vault are not in the trail "
                   "yet; the replicas move them in as they run")
    journal = audit_journal_dir(path)
    staged = [] if on_server else staged_segment_files(journal)
    if staged:
        click.echo(f"note: {len(staged)} audit journal segment(s) hold events not in the trail yet; "
                   "the service moves them in as it runs, or when it next starts")
    damaged = [] if on_server else damaged_segment_files(journal)
    if damaged:
        click.echo(f"audit journal DAMAGED: {len(damaged)} segment(s) failed authentication, events "
                   f"after the damage are missing from the trail: {', '.join(p.name for p in damaged)}")
    return 0 if result.ok and not damaged else EXIT_PROBLEM



@command(audit, "archive", log_level="INFO")
@click.option("--older-than-days", type=click.IntRange(min=0), default=None,
              help="archive the events older than this (default TWIN_AUDIT_ARCHIVE_DAYS)")
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="events read per batch while verifying what moves")
def archive(older_than_days: int | None, batch_size: int) -> int:
    """Move audit events older than the archive age out of the live vault into encrypted,
    compressed, checksummed archive segments (ending on seals), verifying them first; the
    nightly retention job does the same. Exit 0 done (also when nothing was old enough), 1 the
    chain is broken (nothing from the break on moves), 2 could not archive."""
    from datetime import timedelta

    from compliance.audit_events import AuditChainBrokenError

    from ..storage.progress import report
    from .plumbing import open_runtime

    deployment = load_deployment()
    days = deployment.config.audit_archive_days if older_than_days is None else older_than_days
    runtime = open_runtime(deployment)
    try:
        run = runtime.audit.archive_older_than(runtime.clock() - timedelta(days=days), batch_size=batch_size,
                                               progress=report)
    except AuditChainBrokenError as exc:
        click.echo(f"audit trail BROKEN at event {exc.seq}: {exc.reason}; nothing from it on was archived")
        return EXIT_PROBLEM
    finally:
        runtime.close()
    click.echo(f"archived {run.events} audit event(s) older than {days} day(s) into {run.segments} "
               f"segment(s), {run.bytes} bytes")
    return 0


COMMAND = audit
