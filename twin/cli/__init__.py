"""The ``twin`` command: one entry point whose subcommands mirror the library.

    twin serve                                   the REST API (waitress)
    twin keys generate|rotate                    the keyring
    twin tokens issue|list|revoke                API bearer tokens
    twin db setup|status|migrate|rollback|backup|verify|restore|info
    twin dsr export|erase                        data-subject requests, offline
    twin retention run|schedule                  storage limitation
    twin model fit|recompute|parameters          the learner model's skill parameters
    twin audit verify                            the audit trail's hash chain
    twin settings import-legacy                  legacy JSON into settings.db

One module per command group; what they share (options, loading the deployment, the live
service guard, one-line errors and exit codes) lives in ``plumbing``. The ``scripts/*.py``
seed names call the same commands.
"""

from __future__ import annotations

import sys

import click

from . import audit, db, dsr, keys, model, retention, serve, settings, tokens
from .plumbing import EXIT_CODES_HELP, Group


@click.group("twin", cls=Group, epilog=EXIT_CODES_HELP, context_settings={"max_content_width": 100})
@click.option("--log-level", metavar="LEVEL", default=None,
              help="log level of the subcommand (DEBUG, INFO, WARNING; each has its default)")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """The learner twin: service, keys, tokens, databases, data-subject requests, retention
    and audit. Configuration comes from the environment (TWIN_DATA_DIR, TWIN_KEYRING_PATH, ...:
    see the README)."""
    ctx.obj = {"log_level": log_level}


for module in (serve, keys, tokens, db, dsr, retention, model, audit, settings):
    cli.add_command(module.COMMAND)


def main(argv: list[str] | None = None) -> None:
    """The console script ``twin``."""
    cli.main(args=argv, prog_name="twin")


if __name__ == "__main__":
    sys.exit(main())
