"""Serving the app with waitress, with a graceful stop.

On SIGTERM/SIGINT the listening socket closes first (no new connections), requests already
accepted run to completion and their responses are flushed, then every database is
checkpointed and closed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)


def _busy(server: Any) -> bool:
    dispatcher = server.task_dispatcher
    if dispatcher.active_count or dispatcher.queue:
        return True
    return any(getattr(channel, "total_outbufs_len", 0) or getattr(channel, "requests", None)
               for channel in list(server._map.values()) if channel is not server)  # noqa: SLF001


def serve(app: Any, *, host: str, port: int, threads: int, on_stop: Any = None,
          drain_seconds: float = 20.0, ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT or until ``stop`` is set, then drain in-flight requests.

    ``ready`` is set once the socket listens (its port is then in ``ready.port``).
    """
    server = create_server(app, host=host, port=port, threads=threads, ident="learner-twin",
                           channel_timeout=30, connection_limit=200)
    stop = stop or threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("received %s: draining in-flight requests", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    log.info("serving on http://%s:%s with %d threads", host, server.effective_port, threads)
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
