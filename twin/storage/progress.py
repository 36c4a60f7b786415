"""Progress of long work (backup, restore, purge, erasure, key rewrap, migration, import).

Library code reports through a ``ProgressFactory`` it is handed, ``silent`` by default, so a
service never draws on its terminal:

    def purge(..., progress: ProgressFactory = silent):
        with progress("purge learning_sessions", total, "rows") as bar:
            bar.update(n)

Commands pass ``report``: a tqdm bar when stderr is a terminal, otherwise a log line every
``LOG_EVERY_S`` seconds and one at the end, so a cron job's log shows how far it got.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol

log = logging.getLogger("twin.progress")

LOG_EVERY_S = 10.0


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...
    def __enter__(self) -> "Progress": ...
    def __exit__(self, *exc: object) -> None: ...


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int | None = None, unit: str = "items") -> Progress: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def silent(description: str, total: int | None = None, unit: str = "items") -> Progress:
    """Reports nothing (the default of every library function)."""
    return _Silent()


class LoggedProgress:
    """A log line every ``every_s`` seconds while work goes on, and one when it ends."""

    def __init__(self, description: str, total: int | None, unit: str, *,
                 every_s: float = LOG_EVERY_S, clock: Any = time.monotonic) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self._every, self._clock = every_s, clock
        self._started = self._last = clock()

    def _line(self) -> str:
        of = f"/{self.total:,}" if self.total is not None else ""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.description}: {self.done:,}{of} {self.unit}{share}"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            log.info("%s", self._line())

    def __enter__(self) -> "LoggedProgress":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        outcome = "stopped" if exc_type is not None else "done"
        log.info("%s, %s in %.1fs", self._line(), outcome, self._clock() - self._started)


def report(description: str, total: int | None = None, unit: str = "items") -> Progress:
    """A tqdm bar on a terminal, periodic log lines otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(desc=description, total=total, unit=f" {unit}", file=sys.stderr,
                    dynamic_ncols=True, leave=True)
    return LoggedProgress(description, total, unit)
