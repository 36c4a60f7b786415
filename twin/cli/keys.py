"""``twin keys generate|rotate``: the keyring (see keys/README.md)."""

from __future__ import annotations

import base64
import os
from contextlib import ExitStack
from pathlib import Path

import click

from compliance.keyring import ENV_ACTIVE_FIELD_KEY, ENV_MASTER_SECRET, Keyring

from ..catalog import DATABASES
from ..config import Config
from ..storage.progress import report
from .plumbing import (CommandError, Deployment, command, dry_run_option, group, load_deployment,
                       running_services, while_no_service_runs)

keys = group("keys", "Create the keyring, rotate field keys, rekey the databases.")

REKEY_RISK = ("it cannot open its files once they are under the new key and answers 500 until "
              "restarted; what it writes during the rekey may be lost")


@command(keys, "generate")
@click.option("--out", type=click.Path(path_type=Path),
              help="keyring file to write (default: TWIN_KEYRING_PATH or keys/keyring.json)")
@click.option("--force", is_flag=True,
              help="overwrite an existing keyring (data encrypted under it becomes unreadable!)")
@click.option("--print-env", is_flag=True,
              help=f"print a master secret for {ENV_MASTER_SECRET} instead of writing a file")
def generate(out: Path | None, force: bool, print_env: bool) -> int:
    """Create a keyring file (mode 0600), or print a base64 master secret."""
    if print_env:
        click.echo(f"{ENV_MASTER_SECRET}={base64.b64encode(os.urandom(32)).decode()}")
        return 0
    path = out or Config.from_env().keyring_path
    if path.exists() and not force:
        raise CommandError(f"{path} exists; refusing to overwrite it (data encrypted under it "
                           "would be lost)")
    if path.exists():
        _refuse_while_serving(path)
    Keyring.generate().save(path)
    click.echo(f"wrote keyring {path} (mode 0600). Back it up somewhere safe: see keys/README.md")
    return 0


def _refuse_while_serving(path: Path) -> None:
    """A service reading this keyring would pick the new one up and lose every key it holds:
    --force overwrites a keyring, but never under a running service (stop it first)."""
    config = Config.from_env()
    if config.keyring_path.absolute() != path.absolute():
        return  # not the configured deployment's keyring
    for holder in running_services(config):
        raise CommandError(f"{path}: the keyring of a running service: {holder.describe()}; "
                           "stop it before replacing its keyring")


def _keyring_file(deployment: Deployment) -> Path:
    if ENV_MASTER_SECRET in deployment.config.environ:
        raise CommandError(
            f"keys come from {ENV_MASTER_SECRET}: raise {ENV_ACTIVE_FIELD_KEY} by one, restart, then "
            "run --rewrap (a database rekey needs a keyring file)")
    return deployment.config.keyring_path


@command(keys, "rotate")
@click.option("--new-field-key", "action", flag_value="new-field-key",
              help="add a field-key version, make it active, then rewrap (online)")
@click.option("--distribute-field-key", "action", flag_value="distribute",
              help="replicas: step 1, add a field-key version nobody encrypts under yet and record it "
                   "in the vault; then copy the keyring to every replica")
@click.option("--activate-field-key", "action", flag_value="activate",
              help="replicas: step 2, once every replica holds it, encrypt under the newest version "
                   "and rewrap; then copy the keyring to every replica again")
@click.option("--rewrap", "action", flag_value="rewrap",
              help="rewrap everything not under the active field key (online)")
@click.option("--rekey-databases", "action", flag_value="rekey",
              help="give every database file a new SQLCipher key (refused while a service runs)")
@click.option("--also-data-dir", "extra_dirs", multiple=True, type=click.Path(path_type=Path),
              metavar="DIR", help="with --rekey-databases: rekey the databases of this other data "
                                  "directory sharing the keyring too (repeatable)")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="rows per transaction when rewrapping")
@click.option("--force", is_flag=True, help=f"rekey even while a service runs ({REKEY_RISK})")
@dry_run_option("with --rekey-databases: list the files that would be rekeyed, change nothing")
def rotate(action: str | None, extra_dirs: tuple[Path, ...], batch_size: int, force: bool,
           dry_run: bool) -> int:
    """Rotate keys. A field-key rotation runs next to the service (it picks the new keyring up
    by itself); a rekey of the database files needs the service stopped, and makes every
    other data directory sharing this keyring unreadable unless it is rekeyed in the same run
    (--also-data-dir)."""
    from ..operations.keys import (activate_field_key, add_field_key, distribute_field_key,
                                   rekey_databases, rewrap)

    if action is None:
        raise CommandError("choose one of --new-field-key, --distribute-field-key, "
                           "--activate-field-key, --rewrap, --rekey-databases")
    if dry_run and action != "rekey":
        raise CommandError("--dry-run goes with --rekey-databases")
    deployment = load_deployment()
    keyring = deployment.keyring
    if action == "new-field-key":
        keyring = add_field_key(keyring, _keyring_file(deployment))
        click.echo(f"field key v{keyring.active_field_key} added and active", err=True)
    if action == "distribute":
        keyring = distribute_field_key(keyring, _keyring_file(deployment), deployment.config)
        click.echo(f"field key v{max(keyring.field_keys)} added (v{keyring.active_field_key} stays "
                   "active); copy the keyring to every replica, then --activate-field-key")
        return 0
    if action == "activate":
        keyring = activate_field_key(keyring, _keyring_file(deployment), deployment.config)
        click.echo(f"field key v{keyring.active_field_key} active; copy the keyring to every replica", err=True)
    if action in ("new-field-key", "rewrap", "activate"):
        done = rewrap(deployment.config, keyring, batch_size, progress=report)
        click.echo(f"rewrapped {done.subject_keys} subject keys, {done.settings} sensitive settings and "
                   f"{done.archive_segments} audit archive segment keys under field key v{keyring.active_field_key}")
        return 0
    # Another data directory: its catalog files, whatever *_DB_PATH says about this one's.
    base = {k: v for k, v in deployment.config.environ.items() if not k.endswith("_DB_PATH")}
    others = [Deployment(Config.from_env({**base, "TWIN_DATA_DIR": str(d)}), keyring)
              for d in extra_dirs]
    files = [(name, d.path_of(name)) for d in [deployment, *others] for name in DATABASES]
    path = _keyring_file(deployment)
    with ExitStack() as held:  # every data directory the rekey touches
        for d in [deployment, *others]:
            held.enter_context(while_no_service_runs(d, None, force=force, risk=REKEY_RISK))
        steps = rekey_databases(keyring, path, files, dry_run=dry_run, progress=report)
    for step in steps:
        click.echo(f"{step.name:<18} {step.outcome}  {step.path}")
    if not dry_run:
        click.echo("all databases rekeyed; back up the new keyring (keys/README.md)")
    return 0


COMMAND = keys
