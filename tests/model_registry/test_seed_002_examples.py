"""Seed 002's own usage examples, run as written (only the imports added: the seed shows
none), against the registry configured through the environment (real SQLCipher, real files)."""

from __future__ import annotations

from datetime import datetime

import pytest

from twin.model_registry import ModelManager, ModelPerformance


class TrainedEnsemble:
    """Stands in for the seed's ``trained_model``: any picklable Python object."""

    def __init__(self) -> None:
        self.trees = [[0.1, 0.2], [0.3]]

    def predict(self, x: float) -> float:
        return x * sum(map(sum, self.trees))


def test_training_with_persistence_and_retrieving_model_information(seed_deployment, tmp_path):
    trained_model = TrainedEnsemble()

    # Train model (automatically persisted)
    model_manager = ModelManager()
    model_id = model_manager.save_model(
        name="resource_predictor",
        model=trained_model,
        version="1.0.0",
        model_type="ensemble",
        algorithms=["XGBoost", "Random Forest"],
        metadata={"features": 15, "samples": 50000}
    )

    # Update performance (automatically persisted)
    performance = ModelPerformance(
        mae=0.15, mse=0.02, r2=0.85,
        accuracy_score=0.92, confidence_score=0.88,
        training_time=120.5, prediction_time=0.05,
        last_updated=datetime.now()
    )
    model_manager.update_performance("resource_predictor", "1.0.0", performance)

    # Get all models
    all_models = model_manager.get_model_info()

    # Get specific model versions
    specific_model = model_manager.get_model_info(name="resource_predictor")

    assert model_id["version"] == "1.0.0" and model_id["format"] == "pickle"
    assert [m["name"] for m in all_models["models"]] == ["resource_predictor"]
    assert specific_model["versions"] == ["1.0.0"]
    active = specific_model["active"]
    assert active["algorithms"] == ["XGBoost", "Random Forest"]
    assert active["metadata"] == {"features": 15, "samples": 50000}
    assert active["latest_performance"]["r2"] == 0.85
    # Persisted where the environment says, encrypted; survives a new manager (a restart).
    database = tmp_path / "data" / "model_registry.db"
    assert not database.read_bytes().startswith(b"SQLite format 3\x00")
    restarted = ModelManager()
    assert restarted.load_model("resource_predictor", allow_pickle=True).predict(1.0) == pytest.approx(0.6)
    assert restarted.get_performance("resource_predictor", "1.0.0")[0]["mae"] == 0.15
