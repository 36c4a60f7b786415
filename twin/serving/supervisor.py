"""Pre-fork supervision: one listening socket, N worker processes, one operations process.

The supervisor binds the socket, forks the processes and then only waits: it opens no
database and starts no thread, so nothing it holds (locks, audit journal descriptors,
SQLite connections) is ever copied into a child. Each worker builds its own app, and the
runtime under it, after the fork (the audit journal's segment locks are per process).

- A worker that dies unexpectedly is replaced (after 1 s, doubling to 30 s while
  replacements keep dying within a minute), so a crash costs only that process's in-flight
  requests; its staged audit events are recovered by the next flush anywhere. A role whose
  process dies within a minute five times in a row is broken, not unlucky: the supervisor
  stops everything and exits 1 (systemd's ``Restart=on-failure`` takes it from there).
- SIGTERM/SIGINT: every child gets SIGTERM, workers drain their in-flight requests and close
  their runtimes; whoever has not exited after ``stop_timeout`` gets SIGKILL.
- SIGUSR1 is passed on: each child prints every thread's stack to stderr (faulthandler).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("twin.serving")

RESTART_BASE_DELAY_S = 1.0
RESTART_MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0
GIVE_UP_AFTER = 5  # quick deaths in a row


@dataclass
class Child:
    """A role the supervisor keeps filled: ``run`` executes in the forked process."""

    name: str
    run: Callable[[], int]
    pid: int = 0
    started: float = 0.0
    restart_at: float = 0.0
    delay: float = RESTART_BASE_DELAY_S
    quick_deaths: int = 0
    exits: list[int] = field(default_factory=list)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker shares (SO_REUSEADDR; IPv6 when ``host`` is one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)
    sock.set_inheritable(True)
    return sock


def _print_stacks(_signum: int, _frame: object) -> None:
    """Every thread's stack to stderr, from a Python-level handler: it runs on the main thread
    holding the GIL, so no thread's frames change while they are read. faulthandler's own
    handler (``faulthandler.register``) reads them from the C signal handler while the other
    threads run: a worker serving requests crashed with SIGSEGV within 20 dumps."""
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class Supervisor:
    def __init__(self, children: list[Child], *, stop_timeout: float = 30.0,
                 on_child_exit: Callable[[int], None] | None = None,
                 restart_delay: float = RESTART_BASE_DELAY_S) -> None:
        self.children = children
        self.restart_delay = restart_delay
        for child in children:
            child.delay = restart_delay
        self.stop_timeout = stop_timeout
        self.on_child_exit = on_child_exit
        self._stopping = False
        self._gave_up = False

    # -- in the child -------------------------------------------------------------------

    def _fork(self, child: Child) -> None:
        pid = os.fork()
        if pid:
            child.pid, child.started = pid, time.monotonic()
            log.info("started %s (pid %d)", child.name, pid)
            return
        code = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            # `kill -USR1 <pid>` prints every thread's stack: how to see what a hung worker does.
            signal.signal(signal.SIGUSR1, _print_stacks)
            code = child.run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("%s failed", child.name)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never return into the supervisor's stack

    # -- in the supervisor --------------------------------------------------------------

    def run(self) -> int:
        """Start every child and keep them running until SIGTERM/SIGINT; returns the exit code."""
        def request_stop(signum: int, _frame: object) -> None:
            if not self._stopping:
                log.info("received %s: stopping %d processes", signal.Signals(signum).name,
                         len(self.children))
            self._stopping = True

        def pass_on(signum: int, _frame: object) -> None:
            for child in self.children:
                if child.pid:
                    os.kill(child.pid, signum)

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGUSR1, pass_on)
        for child in self.children:
            self._fork(child)
        while not self._stopping:
            self._reap(restart=True)
            time.sleep(0.2)
        return self._stop_all()

    def _reap(self, *, restart: bool) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # none left running: the ones due still get replaced below
                break
            if pid == 0:
                break
            child = next((c for c in self.children if c.pid == pid), None)
            if self.on_child_exit is not None:
                self.on_child_exit(pid)
            if child is None:
                continue
            code = _exit_code(status)
            child.pid = 0
            child.exits.append(code)
            if not restart:
                continue
            lived = time.monotonic() - child.started
            stable = lived > STABLE_AFTER_S
            child.quick_deaths = 0 if stable else child.quick_deaths + 1
            child.delay = self.restart_delay if stable else min(RESTART_MAX_DELAY_S, child.delay * 2)
            child.restart_at = time.monotonic() + child.delay
            if child.quick_deaths >= GIVE_UP_AFTER:
                log.error("%s (pid %d) exited with %d, dying within %.0fs of its start %d times in a "
                          "row: giving up", child.name, pid, code, STABLE_AFTER_S, child.quick_deaths)
                self._stopping = self._gave_up = True
                continue
            log.error("%s (pid %d) exited with %d after %.0fs; replacing it in %.0fs",
                      child.name, pid, code, lived, child.delay)
        now = time.monotonic()
        for child in self.children:
            if restart and not child.pid and now >= child.restart_at and not self._stopping:
                self._fork(child)

    def _stop_all(self) -> int:
        for child in self.children:
            if child.pid:
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.stop_timeout
        while any(c.pid for c in self.children) and time.monotonic() < deadline:
            self._reap(restart=False)
            time.sleep(0.05)
        stragglers = [c for c in self.children if c.pid]
        for child in stragglers:
            log.error("%s (pid %d) did not stop within %.0fs: killed", child.name, child.pid,
                      self.stop_timeout)
            os.kill(child.pid, signal.SIGKILL)
        while any(c.pid for c in self.children):
            self._reap(restart=False)
            time.sleep(0.05)
        log.info("stopped")
        failed = self._gave_up or stragglers or any(
            c.exits and c.exits[-1] not in (0, -signal.SIGTERM) for c in self.children)
        return 1 if failed else 0
