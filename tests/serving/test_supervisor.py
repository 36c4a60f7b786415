"""The supervisor keeps its processes running, and gives up on one that cannot start."""

from __future__ import annotations

import os
import signal
import threading
import time

from live_service import live_service
from twin.serving.supervisor import GIVE_UP_AFTER, Child, Supervisor


def test_a_process_that_keeps_dying_at_start_makes_the_supervisor_stop_and_fail():
    started = time.monotonic()
    supervisor = Supervisor([Child("broken", lambda: 3)], restart_delay=0.01)

    code = supervisor.run()

    (child,) = supervisor.children
    assert code == 1 and child.exits == [3] * GIVE_UP_AFTER and child.pid == 0
    assert time.monotonic() - started < 20


def test_sigterm_stops_every_child_and_the_supervisor_exits_0(tmp_path):
    marker, ready = tmp_path / "stopped", tmp_path / "ready"

    def patient() -> int:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        ready.touch()
        stop.wait(30)
        marker.write_text(str(os.getpid()))
        return 0

    def stop_once_the_child_listens() -> None:  # a SIGTERM before that would kill it outright
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    supervisor = Supervisor([Child("patient", patient)], restart_delay=0.01)
    threading.Thread(target=stop_once_the_child_listens, daemon=True).start()

    assert supervisor.run() == 0
    assert marker.exists()  # it ran its own shutdown, not killed
    assert supervisor.children[0].exits == [0]


def test_the_only_process_is_replaced_when_it_dies(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()

    def short_lived() -> int:
        (runs / str(os.getpid())).touch()
        if len(list(runs.iterdir())) >= 3:
            os.kill(os.getppid(), signal.SIGTERM)  # enough: stop the supervisor
            time.sleep(5)
        return 1

    supervisor = Supervisor([Child("only", short_lived)], restart_delay=0.01)

    supervisor.run()

    assert len(list(runs.iterdir())) == 3


def test_stack_dumps_asked_for_while_requests_run_never_crash_a_worker(tmp_path):
    """SIGUSR1 prints every thread's stack (an operator's look at a hung worker). Read from a C
    signal handler while request threads run, the frames changed under the reader: the worker
    died with SIGSEGV within 20 dumps. Now 100 dumps under load leave the worker serving."""
    with live_service(tmp_path, "--workers", "1", "--threads", "4", "--no-retention", metrics=False) as service:
        conn = service.connect("service")
        status, created, _ = conn("POST", "/v1/profiles", {"user_id": "dumped"})
        assert status == 201
        conn.close()
        path, stop, statuses = f"/v1/profiles/{created['profile_id']}", threading.Event(), []

        def reader() -> None:
            reads = service.connect("service")
            while not stop.is_set():
                statuses.append(reads("GET", path)[0])
            reads.close()
        readers = [threading.Thread(target=reader) for _ in range(4)]
        for thread in readers:
            thread.start()
        children = service.children()
        try:
            for _ in range(100):
                service.process.send_signal(signal.SIGUSR1)
                time.sleep(0.03)
        finally:
            stop.set()
            for thread in readers:
                thread.join(30)
        assert service.children() == children  # no worker replaced
        assert service.stop() == 0
    log = service.log()
    assert "exited with" not in log and log.count("most recent call first") >= 100
    assert set(statuses) == {200} and len(statuses) > 100
