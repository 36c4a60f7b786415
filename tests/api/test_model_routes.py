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


# -- seed 002's paths: deprecated aliases with the same rules ------------------------------------

SEED_ALIASES = [
    ("get", "/models/info", "/v1/models/info"),
    ("get", "/models/forecaster/versions", "/v1/models/forecaster/versions"),
    ("get", "/models/performance/forecaster?version=3", "/v1/models/forecaster/performance?version=3"),
]


@pytest.mark.parametrize("method, seed_path, v1_path", SEED_ALIASES)
def test_a_seed_path_answers_what_its_v1_route_answers_and_says_it_is_deprecated(
        client, service, registry, method, seed_path, v1_path):
    seed = getattr(client, method)(seed_path, headers=service)
    current = getattr(client, method)(v1_path, headers=service)

    assert seed.status_code == current.status_code == 200
    assert seed.get_json() == current.get_json()
    assert seed.headers["Deprecation"] == "true"
    assert seed.headers["Link"] == f'<{v1_path.split("?")[0]}>; rel="successor-version"'


@pytest.mark.parametrize("method, seed_path, v1_path", SEED_ALIASES)
def test_a_seed_path_has_the_same_bearer_token_rules(client, learner_for, registry, method, seed_path,
                                                     v1_path):
    assert getattr(client, method)(seed_path).status_code == 401
    assert getattr(client, method)(seed_path, headers={"Authorization": "Bearer nope"}).status_code == 401
    refused = getattr(client, method)(seed_path, headers=learner_for("user-1"))
    assert refused.status_code == 403
    assert refused.content_type == "application/problem+json"


def test_the_seed_cleanup_with_no_body_keeps_the_default_three(client, service, runtime):
    for i in range(5):
        runtime.models.save_model("forecaster", f"weights-{i}".encode())

    response = client.post("/models/cleanup", headers=service)

    assert response.status_code == 200
    assert [r["version"] for r in response.get_json()["removed"]] == ["1", "2"]
    assert response.get_json()["keep"] == 3
    assert [v["version"] for v in runtime.models.get_versions("forecaster")] == ["3", "4", "5"]
    assert client.post("/models/cleanup", json={"keep": 0}, headers=service).status_code == 422


def test_v1_cleanup_with_no_body_uses_the_default_keep_too(client, service, registry):
    response = client.post("/v1/models/cleanup", headers=service)
    assert response.status_code == 200 and response.get_json()["removed"] == []


def test_the_seed_paths_are_listed_in_openapi_as_deprecated_and_the_v1_ones_are_not(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    for path, method in (("/models/info", "get"), ("/models/{name}/versions", "get"),
                         ("/models/performance/{name}", "get"), ("/models/cleanup", "post")):
        assert paths[path][method]["deprecated"] is True
        assert paths[path][method]["security"] == [{"bearerAuth": []}]
        assert "deprecated" not in paths["/v1" + path.replace("performance/{name}", "{name}/performance")][method]
    assert paths["/models/cleanup"]["post"]["requestBody"]["required"] is False
