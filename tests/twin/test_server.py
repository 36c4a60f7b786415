"""Graceful stop: in-flight requests finish, new connections are refused."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from flask import Flask

from twin.serving import serve


def test_a_request_in_flight_when_the_stop_comes_still_gets_its_response():
    app = Flask("slow")
    handling = threading.Event()

    @app.get("/slow")
    def slow():
        handling.set()
        time.sleep(0.6)
        return "finished"

    ready, stop, stopped = threading.Event(), threading.Event(), threading.Event()
    server = threading.Thread(target=serve, kwargs=dict(app=app, host="127.0.0.1", port=0, threads=2,
                                                        ready=ready, stop=stop, on_stop=stopped.set))
    server.start()
    assert ready.wait(30)
    base = f"http://127.0.0.1:{ready.port}"
    answer: dict[str, str] = {}

    def call() -> None:
        answer["body"] = urllib.request.urlopen(base + "/slow", timeout=10).read().decode()

    client = threading.Thread(target=call)
    client.start()
    assert handling.wait(30)  # the request is now being handled
    stop.set()
    client.join(10)
    server.join(10)
    assert answer.get("body") == "finished"
    assert stopped.is_set() and not server.is_alive()
    try:
        urllib.request.urlopen(base + "/slow", timeout=2)
        raise AssertionError("the server still accepted a connection after stopping")
    except urllib.error.URLError:
        pass
