"""Metrics in the Prometheus text format: requests by route template, files, no personal data."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_support import create_profile
from twin.metrics import observe_retention, render, scrape_registry


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_requests_are_counted_by_route_template_and_status_without_ids(client, service, config):
    before = _samples(render(scrape_registry(config)).decode())
    pid = create_profile(client, service, "metrics-user")["profile_id"]
    client.get(f"/v1/profiles/{pid}", headers=service)
    client.get("/v1/profiles/prf_missing", headers=service)

    text = render(scrape_registry(config)).decode()
    after = _samples(text)

    def delta(status: str) -> float:
        key = ("twin_http_requests_total", (("method", "GET"), ("route", "/v1/profiles/<profile_id>"),
                                             ("status", status)))
        return after.get(key, 0) - before.get(key, 0)
    assert delta("200") == 1 and delta("404") == 1
    assert ("twin_http_request_duration_seconds_count",
            (("method", "GET"), ("route", "/v1/profiles/<profile_id>"), ("status", "200"))) in after
    assert pid not in text and "metrics-user" not in text and "prf_missing" not in text


@pytest.mark.sqlite_only("sizes of database files")
def test_database_sizes_and_the_audit_journal_backlog_are_read_from_the_files(runtime, config):
    samples = _samples(render(scrape_registry(config)).decode())

    db_size = samples[("twin_database_file_bytes", (("database", "digital_twin"), ("file", "db")))]
    assert db_size == runtime.twin_db.path.stat().st_size > 0
    assert ("twin_audit_journal_backlog_segments", ()) in samples
    assert samples[("twin_audit_journal_damaged_segments", ())] == 0


def test_retention_runs_are_counted_with_the_rows_they_purged(config):
    before = _samples(render(scrape_registry(config)).decode())

    observe_retention("completed", {"learning_sessions": 7})
    observe_retention("skipped")

    after = _samples(render(scrape_registry(config)).decode())
    purged = ("twin_retention_rows_purged_total", (("table", "learning_sessions"),))
    assert after[purged] - before.get(purged, 0) == 7
    skipped = ("twin_retention_runs_total", (("outcome", "skipped"),))
    assert after[skipped] - before.get(skipped, 0) == 1
    assert after[("twin_retention_last_run_timestamp_seconds", ())] > 1.7e9
    assert re.search(r"^# TYPE twin_retention_runs_total counter$", render(scrape_registry(config)).decode(), re.M)


def test_the_first_requests_of_many_threads_at_once_are_all_counted(tmp_path):
    import subprocess
    import sys
    import textwrap
    # A fresh process: the metrics are created by whichever request comes first.
    code = textwrap.dedent("""
        import threading
        from twin import metrics
        barrier = threading.Barrier(16)
        def hit():
            barrier.wait()
            metrics.observe_request("GET", "/healthz", 200, 0.001)
        threads = [threading.Thread(target=hit) for _ in range(16)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
        from prometheus_client.parser import text_string_to_metric_families
        registry = CollectorRegistry()  # what a scrape reads: requests answered beside latency
        registry.register(metrics.RequestsFromLatency(list(REGISTRY._collector_to_names)))
        text = generate_latest(registry).decode()
        wanted = {"method": "GET", "route": "/healthz", "status": "200"}
        print(*[s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "twin_http_requests_total" and s.labels == wanted])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "16.0"
