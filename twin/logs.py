"""Service logging: text or JSON lines, the request's context on every line, repeats held back.

``TWIN_LOG_FORMAT=json`` writes one JSON object per line with ``time`` (UTC), ``level``,
``logger``, ``message``, ``pid``, and, for lines written while a request is handled, its
``request_id``, ``method`` and ``route`` (the template, never the concrete path); the access
line adds ``status`` and ``duration_ms``. Nothing else of a request reaches a log: no bodies,
query strings, ids or tokens.

A warning or error that repeats (the same logger, level and message template) is written
once, then at most once a minute with the number held back meanwhile: under load waitress
alone wrote 19,893 "Task queue depth" warnings in 60 s, and a full disk fails every request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable

# Set by the API for the duration of a request (twin.api.app): request_id, method, route.
request_context: contextvars.ContextVar[dict[str, Any] | None] = \
    contextvars.ContextVar("twin_request_context", default=None)

_REQUEST_FIELDS = ("request_id", "method", "route", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REPEAT_INTERVAL_S = 60.0


def _held_back_note(record: logging.LogRecord) -> str:
    held = getattr(record, "held_back", 0)
    return f" [{held} more like this held back in the last {REPEAT_INTERVAL_S:.0f}s]" if held else ""


class TextFormatter(logging.Formatter):
    """The classic line, with the count of held-back repeats when there were any."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter``'s default time text, its seconds part formatted once a second:
        ``strftime`` was a third of the access line's cost, and every request writes one."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)  # one tuple: threads sharing the handler see a pair
        return self.default_msec_format % (text, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record) + _held_back_note(record)
        # ``Formatter.format`` without the traceback's steps, and knowing the format has a time.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        return self._style.format(record) + _held_back_note(record)


class SiteRecords:
    """The records of one logging call (logger, level, source, message template) as
    ``Logger.makeRecord`` makes them, with what is the same every time (the source's file and
    module names, the level's name) taken from one record made up front: ``LogRecord`` spends
    most of its constructor on them, and the access line is made once a request. A record
    factory installed with ``logging.setLogRecordFactory`` is used as ``makeRecord`` would."""

    # What LogRecord sets per record: the time, thread and process (a worker is a fork).
    _PER_RECORD = frozenset({"args", "created", "msecs", "relativeCreated", "thread", "threadName",
                             "processName", "process"})

    def __init__(self, logger: logging.Logger, level: int, pathname: str, lineno: int, msg: str,
                 func: str) -> None:
        self.logger, self._site = logger, (level, pathname, lineno, msg, func)
        made = logging.LogRecord(logger.name, level, pathname, lineno, msg, None, None, func)
        self._fixed = {name: value for name, value in vars(made).items() if name not in self._PER_RECORD}

    def make(self, args: tuple[Any, ...], extra: dict[str, Any]) -> logging.LogRecord:
        if logging.getLogRecordFactory() is not logging.LogRecord \
                or (len(args) == 1 and isinstance(args[0], Mapping)):  # LogRecord unwraps those
            level, pathname, lineno, msg, func = self._site
            return self.logger.makeRecord(self.logger.name, level, pathname, lineno, msg, args, None,
                                          func, extra)
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(self._fixed)
        created = time.time()
        fields["args"], fields["created"] = args, created
        fields["msecs"] = int((created - int(created)) * 1000) + 0.0
        fields["relativeCreated"] = (created - logging._startTime) * 1000  # noqa: SLF001 - as LogRecord
        if logging.logThreads:
            fields["thread"], fields["threadName"] = threading.get_ident(), threading.current_thread().name
        else:
            fields["thread"] = fields["threadName"] = None
        multiprocessing = sys.modules.get("multiprocessing") if logging.logMultiprocessing else None
        fields["processName"] = None if not logging.logMultiprocessing else \
            "MainProcess" if multiprocessing is None else multiprocessing.current_process().name
        fields["process"] = os.getpid() if logging.logProcesses else None
        fields.update(extra)
        return record


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
        document: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage() + _held_back_note(record), "pid": record.process}
        context = request_context.get() or {}
        for name in _REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class RepeatLimiter(logging.Filter):
    """Lets the first record of each (logger, level, message template) at ``min_level`` or
    above through, then at most one per ``interval`` seconds, carrying how many were held."""

    def __init__(self, interval: float = REPEAT_INTERVAL_S, min_level: int = logging.WARNING,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1000) -> None:
        super().__init__()
        self.interval, self.min_level, self.clock, self.max_keys = interval, min_level, clock, max_keys
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            state = self._seen.get(key)
            if state is not None and now - state[0] < self.interval:
                state[1] += 1
                return False
            if state is None and len(self._seen) >= self.max_keys:
                self._seen.clear()  # many distinct messages: start over rather than grow
            record.held_back = int(state[1]) if state is not None else 0
            self._seen[key] = [now, 0]
        return True


def apply_service_format(handler: logging.Handler, fmt: str | None = None) -> logging.Handler:
    """Give ``handler`` the service's format (``fmt``, default ``TWIN_LOG_FORMAT``: ``text`` or
    ``json``) and hold back repeats; the one place every command's log handler is set up."""
    if fmt is None:
        fmt = os.environ.get("TWIN_LOG_FORMAT", "text").strip().lower()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatLimiter())
    return handler


# Seed 004's log files, written under TWIN_LOG_DIR (when set) in addition to stderr: each
# takes the records of its loggers (and their children).
LOG_FILES = {"database.log": ("twin.storage",), "migration.log": ("twin.storage.migrations",),
             "performance.log": ("twin.performance",)}


def file_loggers() -> set[str]:
    """The loggers the log files take lines from."""
    return {name for prefixes in LOG_FILES.values() for name in prefixes}


class _LoggerPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes)


def log_file_handlers(log_dir: str | None = None, fmt: str | None = None) -> list[logging.Handler]:
    """Handlers of ``LOG_FILES`` under ``log_dir`` (default ``TWIN_LOG_DIR``; none when unset),
    in the service's format; the directory is made 0700, the files 0600."""
    log_dir = os.environ.get("TWIN_LOG_DIR", "").strip() if log_dir is None else log_dir
    if not log_dir:
        return []
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    handlers: list[logging.Handler] = []
    for name, prefixes in LOG_FILES.items():
        path = os.path.join(log_dir, name)
        os.close(os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
        handler = apply_service_format(logging.FileHandler(path, encoding="utf-8"), fmt)
        handler.addFilter(_LoggerPrefixes(prefixes))
        handler.twin_handler = True  # type: ignore[attr-defined]
        handlers.append(handler)
    return handlers


def configure_logging(level: str = "INFO", fmt: str | None = None, stream: Any = None) -> None:
    """Send every log line to stderr (or ``stream``) in the service's format (see
    ``apply_service_format``); replaces handlers an earlier call installed (scripts outside the
    ``twin`` command, such as bench/peer_app.py, and tests)."""
    handler = apply_service_format(logging.StreamHandler(stream or sys.stderr), fmt)
    handler.twin_handler = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "twin_handler", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    for file_handler in log_file_handlers(fmt=fmt):
        root.addHandler(file_handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
