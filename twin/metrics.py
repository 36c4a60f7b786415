"""Prometheus metrics (prometheus-client), without personal data.

Labels hold only route templates (``/v1/profiles/<profile_id>``), methods, status codes,
database and table names, and outcomes: never ids, tokens or values from a request.

Counted where they happen, in every process: requests and their latency by method, route
template and status; retention runs and the rows they purged. Read at scrape time from the
files: each database's file and WAL size, the audit journal's backlog (segments staged but
not yet chained, and damaged ones). With several worker processes the service runs
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
``twin.serving`` before any metric exists), so one scrape of ``/metrics`` on the metrics
port reports every worker.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_created: dict[str, Any] = {}
_create_lock = threading.Lock()


def _metrics() -> dict[str, Any]:
    # Created on first use, not at import: in multiprocess mode the values must be file-backed,
    # which prometheus-client decides when a metric (or a labelled child) is created. Under a
    # lock: two threads creating them at once would register every name twice.
    if _created:
        return _created
    with _create_lock:
        if not _created:
            _created.update(_new_metrics())
    return _created


def _new_metrics() -> dict[str, Any]:
    return {
        "latency": Histogram("twin_http_request_duration_seconds",
                             "Time from the request's start to its response",
                             ["method", "route", "status"], buckets=_LATENCY_BUCKETS),
        "retention_runs": Counter("twin_retention_runs_total",
                                  "Retention runs by outcome (completed, skipped: another "
                                  "process held the lock, failed)", ["outcome"]),
        "retention_last": Gauge("twin_retention_last_run_timestamp_seconds",
                                "When the last completed retention run ended (Unix time)",
                                multiprocess_mode="max"),
        "retention_purged": Counter("twin_retention_rows_purged_total",
                                    "Rows purged by retention, per table", ["table"]),
    }


# (method, route, status) -> its histogram child: ``labels()`` looks it up under a lock on every
# call, and every request is counted. Requests answered (``twin_http_requests_total``) are the
# histogram's count, read at scrape time (``RequestsFromLatency``): a counter beside it was a
# third of the metrics' work on every request.
_request_children: dict[tuple[str, str, str], Any] = {}
_LATENCY = "twin_http_request_duration_seconds"
_LABELS = ("method", "route", "status")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    labels = (method, route, str(status))
    child = _request_children.get(labels)
    if child is None:
        child = _request_children.setdefault(labels, _metrics()["latency"].labels(*labels))
    child.observe(seconds)


class RequestsFromLatency:
    """The collectors a scrape reads, with ``twin_http_requests_total`` added: per method,
    route and status, the latency histogram's count (every request is observed once)."""

    def __init__(self, collectors: list[Any]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self.collectors:
            for family in collector.collect():
                if family.name == _LATENCY:
                    answered = CounterMetricFamily("twin_http_requests", "HTTP requests answered",
                                                   labels=list(_LABELS))
                    for sample in family.samples:
                        if sample.name == _LATENCY + "_count":
                            answered.add_metric([sample.labels[name] for name in _LABELS], sample.value)
                    yield answered
                yield family


def observe_retention(outcome: str, counts: dict[str, int] | None = None) -> None:
    """Count one retention run (``completed``, ``skipped`` or ``failed``) and what it purged."""
    m = _metrics()
    m["retention_runs"].labels(outcome).inc()
    if outcome == "completed":
        m["retention_last"].set(time.time())
        for table, rows in (counts or {}).items():
            m["retention_purged"].labels(table).inc(rows)


class FilesCollector:
    """Scrape-time figures read from the data files (a ``stat`` each, no database opened)."""

    def __init__(self, databases: dict[str, Path], journal_dir: Path) -> None:
        self.databases, self.journal_dir = databases, journal_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from compliance.audit_journal import damaged_segment_files, staged_segment_files

        sizes = GaugeMetricFamily("twin_database_file_bytes", "Size of each database file and its WAL",
                                  labels=["database", "file"])
        for name, path in sorted(self.databases.items()):
            for suffix, kind in (("", "db"), ("-wal", "wal")):
                try:
                    size = os.stat(f"{path}{suffix}").st_size
                except OSError:
                    size = 0
                sizes.add_metric([name, kind], size)
        yield sizes
        staged = staged_segment_files(self.journal_dir)
        backlog = GaugeMetricFamily("twin_audit_journal_backlog_segments",
                                    "Audit journal segments staged and not yet chained into the trail")
        backlog.add_metric([], len(staged))
        yield backlog
        staged_bytes = GaugeMetricFamily("twin_audit_journal_backlog_bytes",
                                         "Bytes of audit journal segments not yet chained")
        staged_bytes.add_metric([], sum(_size(p) for p in staged))
        yield staged_bytes
        damaged = GaugeMetricFamily("twin_audit_journal_damaged_segments",
                                    "Audit journal segments kept because a record failed authentication")
        damaged.add_metric([], len(damaged_segment_files(self.journal_dir)))
        yield damaged


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def files_collector(config: Any) -> FilesCollector:
    """The collector for the databases and audit journal ``config`` points at."""
    from compliance.audit_journal import audit_journal_dir
    from twin.catalog import DATABASES, database_path

    paths = {name: database_path(spec, config) for name, spec in DATABASES.items()}
    return FilesCollector(paths, audit_journal_dir(paths["privacy_vault"]))


def scrape_registry(config: Any) -> CollectorRegistry:
    """The registry a scrape reads: every process's counters (multiprocess mode) or this
    process's, plus the figures read from the files."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess
        collectors = [multiprocess.MultiProcessCollector(None)]  # None: registered wrapped, below
    else:
        from prometheus_client import REGISTRY
        collectors = list(REGISTRY._collector_to_names)  # noqa: SLF001 - same process
    registry.register(RequestsFromLatency(collectors))
    registry.register(files_collector(config))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of ``registry``."""
    return generate_latest(registry)
