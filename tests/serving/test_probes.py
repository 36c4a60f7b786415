"""Probes answer within a second while 400 keep-alive clients saturate a data route: they have
their own threads in every worker, and the connection limit is far above 400."""

from __future__ import annotations

import sys

import pytest

from live_service import REPO, live_service

sys.path.append(str(REPO / "bench"))  # after the packages: bench/compliance.py must not shadow them
from probe_load import run_load  # noqa: E402 - the load generator bench/probe_load.py uses

pytestmark = pytest.mark.slow


def test_healthz_and_readyz_answer_within_a_second_with_400_keep_alive_clients_on_a_data_route(tmp_path):
    with live_service(tmp_path, "--workers", "2", "--threads", "8", "--no-retention", metrics=False) as service:
        conn = service.connect("service")
        profiles = [conn("POST", "/v1/profiles", {"user_id": f"load-{i}"})[1]["profile_id"] for i in range(20)]
        conn.close()

        result = run_load("127.0.0.1", service.port, service.tokens["service"], profiles,
                          connections=400, seconds=6, processes=2)

        assert service.stop() == 0
    assert result["opened"] == 400
    assert set(result["statuses"]) == {200} and result["statuses"][200] > 400  # saturated, all served
    for path, samples in result["probes"].items():
        assert len(samples) >= 10, path
        slowest = max(samples)
        assert all(status == 200 for _, status in samples), (path, samples)
        assert slowest[0] < 1.0, (path, slowest)
