"""/v1/models: the model registry over HTTP (service and admin only)."""

from __future__ import annotations

import pytest


@pytest.fixture
def registry(runtime):
    models = runtime.models
    models.save_model("forecaster", b"weights-1")
    models.save_model("forecaster", b"weights-2")
    models.save_model("forecaster", b"weights-3")
    models.update_performance("forecaster", "3", {"mae": 0.2, "r2": 0.9})
    return models


def test_info_lists_models_with_their_active_version(client, service, registry):
    response = client.get("/v1/models/info", headers=service)
    assert response.status_code == 200
    names = [m["name"] for m in response.get_json()["models"]]
    assert names == ["forecaster"]


def test_versions_of_a_model_and_404_for_an_unknown_one(client, service, registry):
    response = client.get("/v1/models/forecaster/versions", headers=service)
    assert [v["version"] for v in response.get_json()["items"]] == ["1", "2", "3"]
    missing = client.get("/v1/models/nope/versions", headers=service)
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"


def test_performance_history_per_model_and_version(client, admin, registry):
    response = client.get("/v1/models/forecaster/performance?version=3", headers=admin)
    assert response.status_code == 200
    [entry] = response.get_json()["items"]
    assert entry["mae"] == 0.2
    assert client.get("/v1/models/forecaster/performance?bogus=1", headers=admin).status_code == 422


def test_cleanup_keeps_the_newest_and_the_active_version(client, service, registry, runtime):
    registry.set_active("forecaster", "1")
    response = client.post("/v1/models/cleanup", json={"keep": 1}, headers=service)
    assert response.status_code == 200
    remaining = [v["version"] for v in runtime.models.get_versions("forecaster")]
    assert remaining == ["1", "3"]
    assert client.post("/v1/models/cleanup", json={"keep": 0}, headers=service).status_code == 422


def test_learners_may_not_use_the_model_routes(client, learner_for, registry):
    assert client.get("/v1/models/info", headers=learner_for("someone")).status_code == 403
    assert client.get("/v1/models/info").status_code == 401
