"""``twin serve``: the REST API."""

from __future__ import annotations

import faulthandler
import signal

import click

from .plumbing import command, load_deployment


@command(None, "serve", log_level="INFO")
@click.option("--host", default="0.0.0.0", show_default=True, help="bind address")
@click.option("--port", type=int, default=8080, show_default=True, help="port")
@click.option("--threads", type=int, default=8, show_default=True, help="worker threads")
def serve_command(host: str, port: int, threads: int) -> int:
    """Serve the REST API (waitress) until SIGTERM/SIGINT, then drain in-flight requests.

    Sets the deployment up first: generates a development keyring if there is none (never in
    production), creates and migrates every database, and marks every database file as used
    by a running service, so that restore, rekey and rollback refuse until it stops."""
    from ..api.app import create_app
    from ..catalog import DATABASES, open_database
    from ..runtime import Runtime
    from ..server import serve
    from ..storage.service_guard import Holder
    from .plumbing import service_guard

    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see what a hung server does.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    deployment = load_deployment(create_keyring=True)
    registration = service_guard(deployment).register(Holder("service", "twin serve"))
    try:
        runtime = Runtime.open(deployment.config)
        # Every component's database exists and is migrated before the first request, so a
        # schema problem stops the start-up instead of failing a request later.
        for name in DATABASES:
            open_database(name, deployment.config, runtime.keyring.database_keys).close_all()
        app = create_app(deployment.config, runtime=runtime)
        serve(app, host=host, port=port, threads=threads, on_stop=runtime.close)
    finally:
        registration.release()
    return 0


COMMAND = serve_command
