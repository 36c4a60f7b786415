"""Model formats: bytes stored as given, other objects pickled and loaded only on request,
after the SHA-256 check (real SQLCipher registry, real files)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest

from twin.model_registry import ChecksumMismatchError, ModelManager, PickleNotAllowedError


@dataclass
class Weights:
    layers: list[float]


class WritesAFileWhenUnpickled:
    """A pickle payload that runs code: unpickling it creates ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture
def manager(open_catalog_db, tmp_path):
    return ModelManager(open_catalog_db("model_registry"), tmp_path / "models")


def stored_file(manager, name, version="1") -> Path:
    row = manager.db.query_one("SELECT file_name, format FROM model_registry WHERE name = ? "
                               "AND version = ?", (name, version))
    return manager.files.directory / row["file_name"]


def test_bytes_are_stored_as_given_and_recorded_as_bytes(manager):
    record = manager.save_model("onnx", b"\x08\x01raw")
    assert record["format"] == "bytes"
    assert stored_file(manager, "onnx").read_bytes() == b"\x08\x01raw"
    assert manager.load_model("onnx") == b"\x08\x01raw"


def test_an_object_is_pickled_and_its_format_recorded_with_the_version(manager):
    record = manager.save_model("net", Weights([0.5, 1.5]))
    assert record["format"] == "pickle"
    assert manager.db.query_one("SELECT format FROM model_registry")["format"] == "pickle"
    assert pickle.loads(stored_file(manager, "net").read_bytes()) == Weights([0.5, 1.5])


def test_a_pickled_version_is_refused_without_allow_pickle_and_loads_with_it(manager):
    manager.save_model("net", Weights([2.0]))
    with pytest.raises(PickleNotAllowedError, match="allow_pickle=True"):
        manager.load_model("net")
    assert manager.load_model("net", allow_pickle=True) == Weights([2.0])


def test_a_pickle_swapped_on_disk_is_refused_by_its_checksum_before_it_is_unpickled(manager, tmp_path):
    manager.save_model("net", Weights([2.0]))
    marker = tmp_path / "code-ran"
    stored_file(manager, "net").write_bytes(pickle.dumps(WritesAFileWhenUnpickled(str(marker))))

    with pytest.raises(ChecksumMismatchError):
        manager.load_model("net", allow_pickle=True)
    assert not marker.exists()


def test_a_string_is_an_object_too_and_round_trips_through_pickle(manager):
    manager.save_model("label", "a string")
    assert manager.get_versions("label")[0]["format"] == "pickle"
    assert manager.load_model("label", allow_pickle=True) == "a string"
