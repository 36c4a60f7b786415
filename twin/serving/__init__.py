"""Serving the API: ``run_service`` is what ``twin serve`` runs.

    twin serve --workers N --threads T [--no-retention] [--metrics-port P]

N worker processes (default: the CPUs this process may use) share one listening socket,
each with T threads for data requests and its own lane for probes (``http``); a supervisor
forks and replaces them (``supervisor``); one operations process runs the nightly retention
schedule and serves /metrics for all of them (``operations``). Before any fork the
supervisor's process opens every database once: migrations, the audit journal's leftovers
and erasure tombstones are dealt with once, and a bad file stops the start-up.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from twin.config import Config

from .http import serve
from .supervisor import Child, Supervisor, listen

log = logging.getLogger("twin.serving")

__all__ = ["ServeOptions", "run_service", "run_workers", "serve"]

AppFactory = Callable[[], "tuple[Any, Callable[[], Any] | None]"]


def default_workers() -> int:
    """The CPUs this process may run on (container limits included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "0.0.0.0"
    port: int = 8080
    threads: int = 8
    workers: int | None = None           # None: one per CPU
    retention: bool = True                # run the nightly schedule in the operations process
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464       # None: no /metrics; 0: any free port (logged)
    drain_seconds: float = 20.0

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else default_workers()


def prepare(config: Config) -> None:
    """Open every database once before forking: SQLCipher files are created and migrated, a
    PostgreSQL database must already be at this code's schema (``twin db migrate`` changes it,
    never the service); erasure tombstones are re-applied and staged audit events left by an
    earlier run chained (raises on a bad file, a bad setting or a schema not the code's)."""
    from twin.catalog import DATABASES, LEARNER_DATABASES, backend_of, migrator_for, open_database
    from twin.runtime import Runtime

    runtime = Runtime.open(config)
    try:
        for name in DATABASES:
            if name in LEARNER_DATABASES:
                continue  # the runtime opened (and checked) them
            on_server = backend_of(name, config) == "postgresql"
            db = open_database(name, config, runtime.keyring.database_keys, migrate=not on_server)
            try:
                if on_server:
                    migrator_for(db).check_current()
            finally:
                db.close_all()
    finally:
        runtime.close()


def _twin_app(config: Config) -> tuple[Any, Callable[[], Any]]:
    from twin.api.app import create_app
    from twin.runtime import Runtime

    runtime = Runtime.open(config, reapply_tombstones=False)  # done by prepare() before forking
    return create_app(config, runtime=runtime), runtime.close


def run_service(config: Config, options: ServeOptions) -> int:
    """Serve the API until SIGTERM/SIGINT; returns the exit code."""
    metrics_dir = _multiprocess_metrics()
    try:
        prepare(config)
        operations = None
        if options.retention or options.metrics_port is not None:
            from .operations import run_operations
            metrics_socket = None if options.metrics_port is None else \
                listen(options.metrics_host, options.metrics_port)
            operations = (lambda: run_operations(config, retention=options.retention,
                                                 metrics_socket=metrics_socket)), metrics_socket
        return run_workers(lambda: _twin_app(config), options, operations=operations)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def run_workers(make_app: AppFactory, options: ServeOptions, *,
                operations: tuple[Callable[[], int], Any] | None = None) -> int:
    """Serve the app ``make_app`` builds (in each worker, after the fork) with
    ``options.worker_count`` workers; ``operations``: (run, socket it owns) of an extra process."""
    sock = listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    log.info("serving on http://%s:%s with %d workers x %d threads", host, port,
             options.worker_count, options.threads)

    def worker() -> int:
        app, on_stop = make_app()
        serve(app, sockets=[sock], threads=options.threads, on_stop=on_stop,
              drain_seconds=options.drain_seconds)
        return 0

    children = [Child(f"worker {i + 1}", worker) for i in range(options.worker_count)]
    if operations is not None:
        children.append(Child("operations", operations[0]))
    supervisor = Supervisor(children, stop_timeout=options.drain_seconds + 10,
                            on_child_exit=_process_gone)
    try:
        return supervisor.run()
    finally:
        sock.close()
        if operations is not None and operations[1] is not None:
            operations[1].close()


def _multiprocess_metrics() -> str:
    """Put prometheus-client in multiprocess mode for this process and its children: a fresh
    directory for their counters (it must not outlive the service's run)."""
    from twin.metrics import MULTIPROC_ENV

    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(stale)
        own = None
    else:
        directory = own = tempfile.mkdtemp(prefix="twin-metrics-")
        os.environ[MULTIPROC_ENV] = directory
    from prometheus_client import values
    values.ValueClass = values.get_value_class()  # in case prometheus-client was imported before
    return own  # type: ignore[return-value]


def _process_gone(pid: int) -> None:
    from twin.metrics import MULTIPROC_ENV
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
