"""Service logging: JSON lines with the request's context, and repeated warnings held back."""

from __future__ import annotations

import io
import json
import logging

import pytest

from api_support import create_profile
from twin.logs import TEXT_FORMAT, JsonFormatter, RepeatLimiter, SiteRecords, TextFormatter, configure_logging


@pytest.fixture
def json_log():
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "twin_handler", False)]:
        root.removeHandler(handler)


def test_json_format_writes_one_object_per_line_with_the_request_context(client, service, json_log):
    pid = create_profile(client, service, "json-logged-user", personal={"secret": "json-secret-77"})["profile_id"]
    client.get(f"/v1/profiles/{pid}", headers={**service, "X-Request-ID": "trace-json-1"})

    access = [line for line in json_log() if line["logger"] == "twin.access"]
    last = access[-1]
    assert set(last) >= {"time", "level", "logger", "message", "request_id", "route", "status",
                         "duration_ms", "method", "pid"}
    assert last["request_id"] == "trace-json-1" and last["route"] == "/v1/profiles/<profile_id>"
    assert last["status"] == 200 and last["level"] == "INFO" and last["time"].endswith("Z")
    text = json.dumps(json_log())
    for secret in (pid, "json-logged-user", "json-secret-77", service["Authorization"].split()[1]):
        assert secret not in text


def test_a_line_logged_inside_a_request_carries_its_request_id(app, json_log):
    def noisy():
        logging.getLogger("twin.example").warning("something to look at")
        return "ok"
    app.add_url_rule("/noisy", "noisy", noisy)

    app.test_client().get("/noisy", headers={"X-Request-ID": "inside-1"})

    (line,) = [line for line in json_log() if line["logger"] == "twin.example"]
    assert line["request_id"] == "inside-1" and line["route"] == "/noisy" and line["level"] == "WARNING"


def test_a_repeated_warning_is_written_once_a_minute_with_the_count_held_back():
    now = [0.0]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatLimiter(interval=60, clock=lambda: now[0]))
    logger = logging.getLogger("waitress.queue.test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for depth in range(19_893):
            logger.warning("Task queue depth is %d", depth)
        logger.warning("another message")
        logger.info("info is never held back")
        logger.info("info is never held back")
        now[0] = 61.0
        logger.warning("Task queue depth is %d", 1)
    finally:
        logger.removeHandler(handler)

    lines = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert lines == ["Task queue depth is 0", "another message", "info is never held back",
                     "info is never held back",
                     "Task queue depth is 1 [19892 more like this held back in the last 60s]"]


@pytest.mark.parametrize("created", [1764700000.0, 1764700000.0004, 1764700000.9995, 1764700000.9999999,
                                     1764700001.0, 951782400.123456, 4102444799.999])
def test_the_text_format_writes_the_time_as_logging_does_at_every_moment_of_a_second(created):
    ours, standard = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    for moment in (created, created - 1, created, created + 0.5):  # the cached second changes
        record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "t", "created": moment,
                                        "msecs": (moment - int(moment)) * 1000})
        assert ours.format(record) == standard.format(record)
        assert ours.formatTime(record, "%H:%M") == standard.formatTime(record, "%H:%M")


def test_the_text_format_writes_a_traceback_as_logging_does():
    ours, standard = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                                   __import__("sys").exc_info(), "f", sinfo="Stack:\n  here")
    assert ours.format(record) == standard.format(record)
    assert "ValueError: boom" in ours.format(record) and ours.format(record).endswith("here")


def test_a_site_record_is_the_record_make_record_makes():
    logger = logging.getLogger("twin.site-test")
    site = SiteRecords(logger, logging.INFO, "/somewhere/app.py", 7, "%s took %.1fms", "_finish")

    ours = site.make(("GET", 1.25), {"status": 200})
    standard = logger.makeRecord(logger.name, logging.INFO, "/somewhere/app.py", 7, "%s took %.1fms",
                                 ("GET", 1.25), None, "_finish", {"status": 200})

    assert type(ours) is logging.LogRecord and vars(ours).keys() == vars(standard).keys()
    moments = {"created", "msecs", "relativeCreated"}
    assert {k: v for k, v in vars(ours).items() if k not in moments} == \
        {k: v for k, v in vars(standard).items() if k not in moments}
    assert abs(ours.created - standard.created) < 1 and 0 <= ours.msecs < 1000
    assert ours.relativeCreated == pytest.approx((ours.created - logging._startTime) * 1000)
    assert ours.getMessage() == "GET took 1.2ms" and site.make(("PUT", 2.0), {}).args == ("PUT", 2.0)


def test_a_site_record_uses_an_installed_record_factory():
    made = []
    standard_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        made.append(args[0])
        return standard_factory(*args, **kwargs)
    logger = logging.getLogger("twin.site-factory")
    site = SiteRecords(logger, logging.INFO, __file__, 1, "%s", "f")
    logging.setLogRecordFactory(factory)
    try:
        record = site.make(("x",), {"status": 1})
    finally:
        logging.setLogRecordFactory(standard_factory)
    assert made == ["twin.site-factory"] and record.status == 1 and record.getMessage() == "x"
