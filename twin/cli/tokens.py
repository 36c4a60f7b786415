"""``twin tokens issue|list|revoke``: API bearer tokens, printed once, stored only as hashes."""

from __future__ import annotations

import click

from compliance.tokens import ROLES

from .plumbing import (CommandError, command, group, load_deployment, user_id_from,
                       user_id_options)

tokens = group("tokens", "Issue, list and revoke API bearer tokens.")


def _store(deployment):  # -> compliance.tokens.TokenStore
    from compliance.tokens import TokenStore

    from ..catalog import open_database
    return TokenStore(open_database("privacy_vault", deployment.config, deployment.keyring))


@command(tokens, "issue")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the token may do")
@user_id_options
@click.option("--label", help="a note for operators (e.g. which client holds it)")
def issue(role: str, user_id: str | None, user_id_prompt: bool, label: str | None) -> int:
    """Issue a token and print it once (only its hash is stored). A learner token is bound to
    one user id (--user-id or --user-id-prompt)."""
    from compliance.id_hashing import SubjectHasher

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
        issued = store.issue(role, subject_hash=subject, label=label)
    finally:
        store.vault.close_all()
    click.echo(issued.token)
    click.echo(f"token id {issued.identity.token_id} ({role}); shown once, only its hash is stored",
               err=True)
    return 0


@command(tokens, "list")
def list_tokens() -> int:
    """List tokens: id, role, state, created, label (never a secret)."""
    store = _store(load_deployment())
    try:
        rows = store.list()
    finally:
        store.vault.close_all()
    for row in rows:
        click.echo(f"{row['token_id']}  {row['role']:<8} {'revoked' if row['revoked_at'] else 'active':<8} "
                   f"{row['created_at']}  {row['label'] or ''}")
    return 0


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
