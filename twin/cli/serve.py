"""``twin serve``: the REST API."""

from __future__ import annotations

import click

from ..config import Config
from .plumbing import command, load_deployment


@command(None, "serve", log_level="INFO")
@click.option("--host", default="0.0.0.0", show_default=True, help="bind address")
@click.option("--port", type=int, default=8080, show_default=True, help="port")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="worker processes sharing the socket  [default: one per CPU]")
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="data-request threads per worker")
@click.option("--no-retention", is_flag=True,
              help="do not run the nightly retention schedule in the service (run `twin retention "
                   "schedule` separately)")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="address of the /metrics port")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=9464, show_default=True,
              help="port of /metrics, Prometheus text format (0: any free port, logged)")
@click.option("--no-metrics", is_flag=True, help="serve no /metrics")
def serve_command(host: str, port: int, workers: int | None, threads: int, no_retention: bool,
                  metrics_host: str, metrics_port: int, no_metrics: bool) -> int:
    """Serve the REST API until SIGTERM/SIGINT, then drain in-flight requests: WORKERS
    processes share one socket, each with THREADS threads (and its own for probes); one more
    process runs the nightly retention schedule and serves /metrics for all of them.

    On SQLCipher (the default) sets the deployment up first: generates a development keyring
    if there is none (never in production), creates and migrates every database, and marks
    every database file as used by a running service, so that restore, rekey and rollback
    refuse until it stops. On PostgreSQL (TWIN_STORAGE_BACKEND=postgresql) it changes nothing:
    the databases must have been set up and migrated by `twin db setup` / `twin db migrate`
    (exit 2 otherwise), and it never generates a keyring."""
    from ..serving import ServeOptions, run_service
    from ..storage.service_guard import Holder
    from .plumbing import service_guard

    from ..catalog import backend_of

    on_server = backend_of("digital_twin", Config.from_env()) == "postgresql"
    deployment = load_deployment(create_keyring=not on_server)
    registration = service_guard(deployment).register(Holder("service", "twin serve"))
    try:
        options = ServeOptions(host=host, port=port, threads=threads, workers=workers,
                               retention=not no_retention, metrics_host=metrics_host,
                               metrics_port=None if no_metrics else metrics_port)
        return run_service(deployment.config, options)
    finally:
        registration.release()


COMMAND = serve_command
