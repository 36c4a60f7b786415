"""``twin dsr export|erase``: data-subject requests straight on the database files (no server
needed; safe next to a running one)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..storage.progress import report
from .plumbing import (EXIT_PROBLEM, command, confirm, dry_run_option, group, load_deployment,
                       open_runtime, user_id_from, user_id_options, yes_option)

dsr = group("dsr", "Export or erase a data subject's data, offline (GDPR articles 15, 17, 20).")

def _actor(name: str):  # -> compliance.audit.Actor
    from compliance.audit import Actor
    return Actor(f"script:{name}", "operator")


@command(dsr, "export")
@user_id_options
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="write to this file (created 0600) instead of standard output")
def export(user_id: str | None, user_id_prompt: bool, out: Path | None) -> int:
    """Export every stored datum of one subject as one JSON document, streamed (large subjects
    use little memory). The export is recorded in the audit trail."""
    user = user_id_from(user_id, user_id_prompt, required="give --user-id or --user-id-prompt")
    runtime = open_runtime(load_deployment())
    try:
        chunks = runtime.subject_requests.export(_actor("dsr_export"), None, user)
        if out:
            tmp = out.with_name(out.name + ".partial")
            try:
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                os.replace(tmp, out)
            except BaseException:  # the partial file holds decrypted personal data: never leave it
                tmp.unlink(missing_ok=True)
                raise
            click.echo(f"export written to {out}", err=True)
        else:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.write("\n")
    finally:
        runtime.close()
    return 0


@command(dsr, "erase")
@user_id_options
@yes_option("do not ask for confirmation (automation)")
@dry_run_option("only count what would be erased")
def erase(user_id: str | None, user_id_prompt: bool, yes: bool, dry_run: bool) -> int:
    """Erase every stored datum of one subject: tombstone first, rows, data key (crypto-
    shredding), WAL checkpoint, then a re-scan. Prints the receipt as JSON; exit 1 if the
    re-scan still finds rows. Safe to re-run."""
    user = user_id_from(user_id, user_id_prompt, required="give --user-id or --user-id-prompt")
    runtime = open_runtime(load_deployment())
    try:
        actor = _actor("dsr_erase")
        preview = runtime.subject_requests.erase(actor, None, user_id=user, dry_run=True)
        if dry_run:
            click.echo(json.dumps(preview.to_dict(), indent=2))
            return 0
        total = sum(preview.counts.values())
        if not confirm(f"erase {total} rows of this subject ({preview.counts})?", yes=yes,
                       word="erase", refusal="refusing to erase without confirmation: pass --yes"):
            click.echo("nothing erased", err=True)
            return EXIT_PROBLEM
        receipt = runtime.subject_requests.erase(actor, None, user_id=user, progress=report)
        click.echo(json.dumps(receipt.to_dict(), indent=2))
        return 0 if receipt.verified else EXIT_PROBLEM
    finally:
        runtime.close()


COMMAND = dsr
