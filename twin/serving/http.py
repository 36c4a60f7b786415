"""One process serving a WSGI app with waitress: probes in their own lane, a graceful stop.

Probes never queue behind data requests: waitress parses each request on its event-loop
thread before handing it to a worker thread, and the dispatcher here sends ``/healthz`` and
``/readyz`` to a small pool of their own, so a probe answers in milliseconds while every
data thread is busy and hundreds of requests wait (the reason waitress was kept over
gunicorn's threaded worker, which queues whole connections before reading them).

On SIGTERM/SIGINT (or ``stop``) this process stops listening first (with several workers the
shared socket stays open in the others until they stop too), requests already accepted run to
completion and their responses are flushed, then ``on_stop`` runs (the app's runtime closes:
staged audit events chained, WALs checkpointed).
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
import threading
import time
from typing import Any, Callable, Sequence

from waitress import wasyncore
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("twin.serving")

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
PROBE_THREADS = 2
# Per process. 400 keep-alive clients must not lock probes out (waitress stops accepting at
# its limit; the old 200 did exactly that).
CONNECTION_LIMIT = 2000


class LaneDispatcher(ThreadedTaskDispatcher):
    """Waitress's thread pool for data requests, with a second pool for probes."""

    def __init__(self, threads: int, probe_threads: int = PROBE_THREADS) -> None:
        super().__init__()
        self.set_thread_count(threads)
        self.probes = ThreadedTaskDispatcher()
        self.probes.set_thread_count(probe_threads)

    def add_task(self, task: Any) -> None:
        # Called with the channel's requests_lock held and its next request fully parsed.
        requests = getattr(task, "requests", None)
        if requests and requests[0].path in PROBE_PATHS:
            self.probes.add_task(task)
        else:
            super().add_task(task)

    def shutdown(self, cancel_pending: bool = True, timeout: int = 5) -> bool:
        self.probes.shutdown(cancel_pending=cancel_pending, timeout=timeout)
        return super().shutdown(cancel_pending=cancel_pending, timeout=timeout)


def raise_open_file_limit(wanted: int = 65536) -> None:
    """Let this process hold as many connections as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _busy(server: Any) -> bool:
    dispatcher = server.task_dispatcher
    if dispatcher.active_count or dispatcher.queue:
        return True
    return any(getattr(channel, "total_outbufs_len", 0) or getattr(channel, "requests", None)
               for channel in list(server._map.values()) if channel is not server)  # noqa: SLF001


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8,
          on_stop: Callable[[], Any] | None = None, drain_seconds: float = 20.0,
          ready: threading.Event | None = None, stop: threading.Event | None = None,
          sockets: Sequence[socket.socket] = (), channel_timeout: int = 30) -> None:
    """Serve until SIGTERM/SIGINT or until ``stop`` is set, then drain in-flight requests.

    ``sockets``: listening sockets to serve (a worker's inherited socket); without them one
    is bound on ``host:port``. ``ready`` is set once listening (its port in ``ready.port``).
    """
    raise_open_file_limit()
    options: dict[str, Any] = {"sockets": list(sockets)} if sockets else {"host": host, "port": port}
    server = create_server(app, threads=threads, ident="learner-twin", channel_timeout=channel_timeout,
                           connection_limit=CONNECTION_LIMIT, _dispatcher=LaneDispatcher(threads),
                           **options)
    stop = stop or threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("received %s: draining in-flight requests", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    log.info("serving on http://%s:%s with %d threads", server.effective_host, server.effective_port,
             threads)
    if ready is not None:
        ready.port = server.effective_port  # type: ignore[attr-defined]
        ready.set()
    try:
        while not stop.is_set():
            wasyncore.loop(timeout=0.5, map=server._map, use_poll=True, count=1)  # noqa: SLF001
        server.accepting = False
        server.del_channel()
        server.socket.close()
        deadline = time.monotonic() + drain_seconds
        while _busy(server) and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)  # noqa: SLF001
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        for channel in list(server._map.values()):  # noqa: SLF001
            channel.close()
        if on_stop is not None:
            on_stop()
        log.info("stopped")
