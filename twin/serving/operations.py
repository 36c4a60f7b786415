"""The operations process beside the workers: the nightly retention schedule and /metrics.

Running them here, once, rather than in every worker keeps the schedule single (with N
workers the night still runs once; the vault's job lock keeps any other process, such as a
separate ``twin retention schedule``, from running at the same time) and lets one scrape
read every worker's counters.

``/metrics`` is on its own port, bound to 127.0.0.1 by default, and needs no token: the
scraper should not hold an admin token, which could export personal data, and the figures
hold none (``twin.metrics``). Bind it elsewhere only on a network you trust.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from twin.config import Config

log = logging.getLogger("twin.serving")


def start_metrics_server(sock: socket.socket, config: Config) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` on the listening ``sock`` from a background thread."""
    from prometheus_client.exposition import MetricsHandler

    from twin.metrics import scrape_registry

    base = MetricsHandler.factory(scrape_registry(config))

    class Handler(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            super().do_GET()

        def log_message(self, *_args: Any) -> None:  # scrapes are not worth a line each
            pass

    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()[:2]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    host, port = server.server_address[:2]
    log.info("metrics on http://%s:%s/metrics", host, port)
    return server


def run_operations(config: Config, *, retention: bool, metrics_socket: socket.socket | None) -> int:
    """Run until SIGTERM/SIGINT: the retention schedule if ``retention``, /metrics if a socket."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    metrics = start_metrics_server(metrics_socket, config) if metrics_socket is not None else None
    scheduler = None
    if retention:
        from apscheduler.schedulers.background import BackgroundScheduler

        from twin.retention_schedule import build_scheduler
        scheduler = build_scheduler(config=config, scheduler_class=BackgroundScheduler)
        scheduler.start()
    while not stop.wait(0.5):
        pass
    if scheduler is not None:
        # A run cut short is safe: each batch commits on its own and the lock's lease expires.
        scheduler.shutdown(wait=False)
    if metrics is not None:
        metrics.shutdown()
    return 0
