"""``twin tokens issue|list|revoke``: API bearer tokens, printed once, stored only as hashes,
expiring (default 90 days)."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from compliance.tokens import ROLES

from .plumbing import (CommandError, command, group, load_deployment, user_id_from,
                       user_id_options)

tokens = group("tokens", "Issue, list and revoke API bearer tokens.")


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_lifetime(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w``, ``45s``."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if not match or int(match[1]) == 0:
        raise CommandError(f"--expires-in {text!r}: a positive number and a unit s, m, h, d or w "
                           "(e.g. 90d)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _store(deployment):  # -> compliance.tokens.TokenStore
    from compliance.tokens import TokenStore

    from ..catalog import open_database
    return TokenStore(open_database("privacy_vault", deployment.config, deployment.keyring.database_keys))


@command(tokens, "issue")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the token may do")
@user_id_options
@click.option("--label", help="a note for operators (e.g. which client holds it)")
@click.option("--expires-in", "lifetime", default="90d", show_default=True, metavar="DURATION",
              help="how long the token is valid: 90d, 12h, 30m, 2w (at most 3650d)")
def issue(role: str, user_id: str | None, user_id_prompt: bool, label: str | None,
          lifetime: str) -> int:
    """Issue a token and print it once (only its hash is stored). It expires after
    --expires-in (default 90 days), then answers 401. A learner token is bound to one user id
    (--user-id or --user-id-prompt)."""
    from compliance.id_hashing import SubjectHasher

    expires_in = parse_lifetime(lifetime)
    if role != "learner" and (user_id is not None or user_id_prompt):
        raise CommandError("only learner tokens are bound to a user id")
    deployment = load_deployment()
    subject = None
    if role == "learner":
        user = user_id_from(user_id, user_id_prompt,
                            required="a learner token needs --user-id or --user-id-prompt")
        subject = SubjectHasher(deployment.keyring.id_pepper).hash(user)
    store = _store(deployment)
    try:
        issued = store.issue(role, subject_hash=subject, label=label, expires_in=expires_in)
    finally:
        store.vault.close_all()
    click.echo(issued.token)
    click.echo(f"token id {issued.identity.token_id} ({role}, expires in {lifetime}); shown once, "
               "only its hash is stored", err=True)
    return 0


@command(tokens, "list")
def list_tokens() -> int:
    """List tokens: id, role, state, created, expires, last used (to the hour) and label; never
    a secret."""
    from ..storage.timestamps import to_db, utc_now

    store = _store(load_deployment())
    try:
        rows = store.list()
    finally:
        store.vault.close_all()
    now = to_db(utc_now())
    click.echo(f"{'TOKEN ID':<16}  {'ROLE':<8} {'STATE':<8} {'CREATED':<18} {'EXPIRES':<18} "
               f"{'LAST USED':<18} LABEL")
    for row in rows:
        state = ("revoked" if row["revoked_at"] else
                 "expired" if row["expires_at"] and row["expires_at"] <= now else "active")
        click.echo(f"{row['token_id']:<16}  {row['role']:<8} {state:<8} {_minute(row['created_at']):<18} "
                   f"{_minute(row['expires_at']) or 'never':<18} "
                   f"{_minute(row['last_used_at']) or 'never':<18} {row['label'] or ''}")
    return 0


def _minute(stamp: str | None) -> str:
    """``2026-12-01 14:05Z`` from a stored timestamp."""
    return f"{stamp[:10]} {stamp[11:16]}Z" if stamp else ""


@command(tokens, "revoke")
@click.argument("token_id")
def revoke(token_id: str) -> int:
    """Revoke a token by its id (printed when it was issued, and by `tokens list`). A running
    service stops accepting it within TWIN_TOKEN_CACHE_SECONDS."""
    store = _store(load_deployment())
    try:
        if not store.revoke(token_id):
            raise CommandError("no active token with that id")
    finally:
        store.vault.close_all()
    click.echo(f"revoked {token_id}")
    return 0


COMMAND = tokens
