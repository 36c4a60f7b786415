"""ModelManager: versions, stored bytes with checksums, active model, metrics, cleanup, on each
backend: a real SQLCipher registry with files in a directory, and the model_registry schema of
a real PostgreSQL database with the bytes in it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest

from twin.model_registry import (ChecksumMismatchError, DuplicateVersionError,
                                 InvalidModelFieldError, InvalidModelNameError,
                                 InvalidVersionError, ModelFileMissingError, ModelManager,
                                 ModelNotFoundError, ModelPerformance)
from twin.model_registry.schema import MIGRATIONS
from twin.storage import FileBacked, Migrator

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("model_registry")


@pytest.fixture
def model_dir(tmp_path):
    return tmp_path / "models"


@pytest.fixture
def manager(db, model_dir):
    return ModelManager(db, model_dir)


def stored(manager) -> list[str]:
    """The names of the stored model bytes: files in the directory, or model_blobs rows."""
    if isinstance(manager.db, FileBacked):
        return sorted(os.listdir(manager.files.directory))
    return [r[0] for r in manager.db.query('SELECT file_name FROM model_blobs ORDER BY file_name COLLATE "C"')]


def stored_name(manager, name, version) -> str:
    return manager.db.query_one(
        "SELECT file_name FROM model_registry WHERE name = ? AND version = ?", (name, version))[0]


def read_stored(manager, name, version) -> bytes:
    if isinstance(manager.db, FileBacked):
        return (manager.files.directory / stored_name(manager, name, version)).read_bytes()
    return manager.db.query_one("SELECT data FROM model_blobs WHERE file_name = ?",
                                (stored_name(manager, name, version),))[0]


def write_stored(manager, name, version, data: bytes | None) -> None:
    """Change (or, with None, remove) the stored bytes behind the registry's back."""
    file_name = stored_name(manager, name, version)
    if isinstance(manager.db, FileBacked):
        path = manager.files.directory / file_name
        path.unlink() if data is None else path.write_bytes(data)
    elif data is None:
        manager.db.execute("DELETE FROM model_blobs WHERE file_name = ?", (file_name,))
    else:
        manager.db.execute("UPDATE model_blobs SET data = ? WHERE file_name = ?", (data, file_name))


def is_utc_iso(text: str) -> bool:
    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


# -- saving and loading ---------------------------------------------------------------------

def test_a_saved_model_loads_back_byte_for_byte_and_records_its_checksum(manager):
    data = b"\x00weights\xff" * 1000
    record = manager.save_model("resource_predictor", data, model_type="ensemble",
                                algorithms=["XGBoost", "Random Forest"],
                                metadata={"features": 15, "samples": 50000})
    assert record["version"] == "1"
    assert record["is_active"] is True
    assert record["checksum_sha256"] == hashlib.sha256(data).hexdigest()
    assert record["size_bytes"] == len(data)
    assert record["algorithms"] == ["XGBoost", "Random Forest"]
    assert record["metadata"] == {"features": 15, "samples": 50000}
    assert manager.load_model("resource_predictor") == data
    assert manager.load_model("resource_predictor", "1") == data


def test_versions_are_numbered_automatically_when_none_is_given(manager):
    versions = [manager.save_model("m", b"x%d" % i)["version"] for i in range(3)]
    assert versions == ["1", "2", "3"]
    assert manager.load_model("m", "2") == b"x1"


def test_auto_versioning_bumps_the_last_number_of_the_highest_version(manager):
    manager.save_model("m", b"a", version="1.0.9")
    assert manager.save_model("m", b"b")["version"] == "1.0.10"
    manager.save_model("m", b"c", version="2.0.0")
    manager.save_model("m", b"d", version="1.5.0")  # a hotfix of an older line
    assert manager.save_model("m", b"e")["version"] == "2.0.1"


def test_saving_an_existing_version_again_is_refused_and_leaves_no_file(manager, model_dir):
    manager.save_model("m", b"first", version="1.0.0")
    before = stored(manager)
    with pytest.raises(DuplicateVersionError):
        manager.save_model("m", b"second", version="1.0.0")
    assert stored(manager) == before
    assert manager.load_model("m", "1.0.0") == b"first"


@pytest.mark.sqlite_only("model files on disk (PostgreSQL keeps the bytes in the database)")
def test_model_files_are_private_named_after_the_model_and_written_without_leftovers(
        manager, model_dir):
    manager.save_model("Resource Predictor", b"data", version="1.2.0")
    assert stat.S_IMODE(os.stat(model_dir).st_mode) == 0o700
    [name] = stored(manager)
    assert name.startswith("Resource-Predictor-v1.2.0-") and name.endswith(".model")
    assert stat.S_IMODE(os.stat(model_dir / name).st_mode) == 0o600


def test_a_new_version_becomes_active_unless_asked_not_to(manager):
    manager.save_model("m", b"one")
    manager.save_model("m", b"two", activate=False)
    assert manager.get_active("m")["version"] == "1"
    assert manager.load_model("m") == b"one"
    manager.save_model("m", b"three")
    assert manager.get_active("m")["version"] == "3"
    assert [v["is_active"] for v in manager.get_versions("m")] == [False, False, True]


def test_set_active_switches_the_single_active_version(manager):
    for i in range(3):
        manager.save_model("m", b"v%d" % i)
    record = manager.set_active("m", "1")
    assert record["is_active"] is True
    assert manager.load_model("m") == b"v0"
    assert [v["version"] for v in manager.get_versions("m") if v["is_active"]] == ["1"]


def test_active_model_is_none_without_one_and_loading_it_is_not_found(manager):
    manager.save_model("m", b"x", activate=False)
    assert manager.get_active("m") is None
    assert manager.get_active("unknown") is None
    with pytest.raises(ModelNotFoundError, match="no active version"):
        manager.load_model("m")


@pytest.mark.parametrize("call, error", [
    (lambda m: m.load_model("nobody"), "no model named 'nobody'"),
    (lambda m: m.load_model("m", "9"), "has no version '9'"),
    (lambda m: m.set_active("m", "9"), "has no version '9'"),
    (lambda m: m.get_versions("nobody"), "no model named"),
    (lambda m: m.get_model_info("nobody"), "no model named"),
    (lambda m: m.get_performance("m", "9"), "has no version"),
    (lambda m: m.update_performance("nobody", "1", {"mae": 0.1}), "no model named"),
])
def test_unknown_models_and_versions_are_not_found(manager, call, error):
    manager.save_model("m", b"x")
    with pytest.raises(ModelNotFoundError, match=error):
        call(manager)


@pytest.mark.postgresql_only("round trips to a database server")
def test_a_save_on_postgresql_takes_three_round_trips(manager, db):
    manager.save_model("warm", b"pool")

    before = db.counter.this_thread()
    record = manager.save_model("m", b"\x00model bytes", version="1.0.0", metadata={"k": 1})
    second = manager.save_model("m", b"\x00next bytes")
    # BEGIN, the version lock and the name's versions in one; the deactivation, the row and
    # the bytes with the COMMIT; the new record's read.
    assert (db.counter.this_thread() - before).round_trips == 6

    assert (record["version"], second["version"]) == ("1.0.0", "1.0.1")
    assert second["is_active"] and second["latest_performance"] is None
    assert not manager.get_versions("m")[0]["is_active"]
    assert manager.load_model("m", "1.0.0") == b"\x00model bytes"
    assert manager.load_model("m") == b"\x00next bytes"


# -- file integrity -------------------------------------------------------------------------

def test_a_model_file_with_a_flipped_byte_is_refused(manager):
    manager.save_model("m", b"\x01\x02\x03\x04" * 256)
    data = bytearray(read_stored(manager, "m", "1"))
    data[100] ^= 0x01
    write_stored(manager, "m", "1", bytes(data))
    with pytest.raises(ChecksumMismatchError, match="refusing to load"):
        manager.load_model("m")


def test_a_removed_model_file_is_reported_as_missing(manager):
    manager.save_model("m", b"data")
    write_stored(manager, "m", "1", None)
    with pytest.raises(ModelFileMissingError):
        manager.load_model("m", "1")


def test_a_registered_model_has_no_file_but_takes_part_in_versioning(manager, model_dir):
    record = manager.register_model("external", model_type="served elsewhere", activate=True)
    assert (record["version"], record["has_file"], record["checksum_sha256"]) == ("1", False, None)
    assert manager.save_model("external", b"now stored")["version"] == "2"
    with pytest.raises(ModelFileMissingError, match="without a file"):
        manager.load_model("external", "1")
    assert len(stored(manager)) == 1


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", " padded", "../escape", "a/b", "a\\b", "..", "a..b",
                                  "tab\there", "x" * 129, 42, None])
def test_unsafe_or_malformed_model_names_are_refused(manager, model_dir, name):
    with pytest.raises(InvalidModelNameError) as caught:
        manager.save_model(name, b"data")
    assert isinstance(caught.value, ValueError)
    assert stored(manager) == []


@pytest.mark.parametrize("name", ["../escape", "a/b"])
def test_unsafe_names_are_refused_by_every_lookup(manager, name):
    for call in (manager.load_model, manager.get_versions, manager.get_active,
                 manager.get_performance, manager.get_model_info):
        with pytest.raises(InvalidModelNameError):
            call(name)


@pytest.mark.parametrize("version", ["", "1/2", "../1", "1..2", ".1", "v 1", "x" * 65, 2])
def test_malformed_versions_are_refused(manager, version):
    with pytest.raises(InvalidVersionError):
        manager.save_model("m", b"data", version=version)


def test_a_unicode_name_is_kept_and_its_file_name_is_a_safe_slug(manager, model_dir):
    manager.save_model("modèle réseau", b"data")
    assert manager.get_model_info("modèle réseau")["versions"] == ["1"]
    [name] = stored(manager)
    assert name.isascii() and " " not in name


@pytest.mark.parametrize("kwargs", [
    {"metadata": ["not", "a", "dict"]},
    {"metadata": {"bad": float("nan")}},
    {"algorithms": "XGBoost"},
    {"model_type": ""},
])
def test_malformed_arguments_are_refused_with_a_named_error(manager, model_dir, kwargs):
    arguments = {"name": "m", "model": b"data", **kwargs}
    with pytest.raises(InvalidModelFieldError):
        manager.save_model(**arguments)
    assert stored(manager) == []


# -- performance and training history -------------------------------------------------------

def test_performance_history_is_kept_oldest_first_and_the_latest_is_shown_on_the_version(manager):
    manager.save_model("m", b"x")
    manager.update_performance("m", "1", ModelPerformance(mae=0.2, r2=0.80,
                                                          last_updated=T0 + timedelta(hours=2)))
    manager.update_performance("m", "1", {"mae": 0.3, "f1": 0.7, "last_updated": T0})
    manager.update_performance("m", "1", {"mae": 0.1, "training_samples": 50000,
                                          "recorded_at": (T0 + timedelta(hours=5)).isoformat()})
    history = manager.get_performance("m", "1")
    assert [h["mae"] for h in history] == [0.3, 0.2, 0.1]
    assert history[0]["extra"] == {"f1": 0.7}
    assert history[2]["training_samples"] == 50000
    assert all(is_utc_iso(h["recorded_at"]) for h in history)
    assert manager.get_versions("m")[0]["latest_performance"]["mae"] == 0.1


def test_performance_of_a_model_covers_every_version_and_survives_a_restart(db, model_dir):
    first = ModelManager(db, model_dir)
    first.save_model("m", b"a")
    first.save_model("m", b"b")
    first.update_performance("m", "1", {"accuracy_score": 0.9, "last_updated": T0})
    first.update_performance("m", None, {"accuracy_score": 0.95})  # None: the active version
    restarted = ModelManager(db, model_dir)
    assert [(p["version"], p["accuracy_score"]) for p in restarted.get_performance("m")] == \
        [("1", 0.9), ("2", 0.95)]


@pytest.mark.parametrize("performance", [
    {"mae": math.nan}, {"mae": "low"}, {"training_samples": 1.5}, {"feature_count": -1},
    {"mae": True}, {}, {"last_updated": "yesterday", "mae": 0.1}, ["mae", 0.1],
])
def test_malformed_metrics_are_refused(manager, performance):
    manager.save_model("m", b"x")
    with pytest.raises(InvalidModelFieldError):
        manager.update_performance("m", "1", performance)
    assert manager.get_performance("m") == []


def test_training_history_is_recorded_per_version(manager):
    manager.save_model("m", b"x")
    record = manager.save_training_history(
        "m", "1", training_started=T0, training_completed=T0 + timedelta(minutes=30),
        dataset_size=50000, hyperparameters={"max_depth": 6}, validation_score=0.91)
    assert record["training_started"] == "2026-01-05T12:00:00.000000Z"
    assert record["training_completed"] == "2026-01-05T12:30:00.000000Z"
    assert manager.get_training_history("m") == [record]
    with pytest.raises(InvalidModelFieldError, match="before"):
        manager.save_training_history("m", "1", training_started=T0,
                                      training_completed=T0 - timedelta(seconds=1))


# -- information ----------------------------------------------------------------------------

def test_model_info_summarises_every_model_as_json(manager):
    manager.save_model("alpha", b"a1", model_type="ensemble")
    manager.save_model("alpha", b"a2", activate=False)
    manager.save_model("beta", b"b1")
    manager.update_performance("alpha", "1", {"mae": 0.5})
    info = manager.get_model_info()
    assert json.loads(json.dumps(info)) == info
    alpha, beta = info["models"]
    assert (alpha["name"], alpha["versions"], alpha["latest_version"], alpha["active_version"]) \
        == ("alpha", ["1", "2"], "2", "1")
    assert alpha["active"]["model_type"] == "ensemble"
    assert alpha["active"]["latest_performance"]["mae"] == 0.5
    assert beta["version_count"] == 1
    assert is_utc_iso(alpha["created_at"]) and is_utc_iso(alpha["updated_at"])
    assert manager.get_model_info("beta") == beta


def test_versions_performance_and_cleanup_results_are_json(manager):
    for i in range(3):
        manager.save_model("m", b"%d" % i)
    manager.update_performance("m", "1", ModelPerformance(mse=0.01, last_updated=T0))
    for value in (manager.get_versions("m"), manager.get_performance("m"),
                  manager.cleanup_old_models(keep=1)):
        assert json.loads(json.dumps(value)) == value
    assert all(is_utc_iso(v["created_at"]) for v in manager.get_versions("m"))


# -- cleanup --------------------------------------------------------------------------------

def test_cleanup_keeps_the_newest_versions_and_the_active_one_and_deletes_the_rest_with_files(
        manager, model_dir):
    for i in range(1, 6):
        manager.save_model("m", b"version %d" % i)
    manager.set_active("m", "1")
    manager.update_performance("m", "2", {"mae": 0.4})
    doomed = [stored_name(manager, "m", v) for v in ("2", "3")]
    result = manager.cleanup_old_models(keep=2)
    assert [r["version"] for r in result["removed"]] == ["2", "3"]
    assert result["files_deleted"] == 2
    assert [v["version"] for v in manager.get_versions("m")] == ["1", "4", "5"]
    assert not set(doomed) & set(stored(manager))
    assert len(stored(manager)) == 3
    assert manager.load_model("m") == b"version 1"
    assert manager.get_performance("m") == []


def test_cleanup_never_deletes_the_active_version_even_with_keep_one(manager):
    manager.save_model("m", b"old")
    manager.save_model("m", b"new", activate=False)
    manager.cleanup_old_models(keep=1)
    assert [v["version"] for v in manager.get_versions("m")] == ["1", "2"]
    assert manager.load_model("m") == b"old"


def test_cleanup_of_one_name_leaves_other_models_alone(manager):
    for name in ("a", "b"):
        for i in range(3):
            manager.save_model(name, b"%s%d" % (name.encode(), i))
    result = manager.cleanup_old_models(keep=1, name="a")
    assert {r["name"] for r in result["removed"]} == {"a"}
    assert manager.get_model_info("b")["version_count"] == 3


@pytest.mark.parametrize("keep", [0, -1, 1.5, True])
def test_cleanup_needs_keep_of_at_least_one(manager, keep):
    with pytest.raises(InvalidModelFieldError):
        manager.cleanup_old_models(keep=keep)


# -- concurrency and schema -----------------------------------------------------------------

def test_concurrent_saves_get_distinct_versions_and_one_active(manager, model_dir):
    errors: list[BaseException] = []

    def save_some() -> None:
        try:
            for _ in range(5):
                manager.save_model("shared", os.urandom(64))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=save_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = manager.get_versions("shared")
    assert sorted(int(v["version"]) for v in versions) == list(range(1, 21))
    assert sum(v["is_active"] for v in versions) == 1
    assert len(stored(manager)) == 20
    assert all(manager.load_model("shared", v["version"]) for v in versions)


def test_the_schema_migrates_down_and_up_again(db):
    migrator = Migrator(db, MIGRATIONS)
    migrator.rollback(0)
    assert "model_registry" not in db.table_names()
    migrator.migrate()
    assert {"model_registry", "performance_metrics", "training_history"} <= set(db.table_names())


@pytest.mark.sqlite_only("a registry file and its model directory")
def test_open_uses_the_catalog_database_and_the_configured_model_directory(config, keyring):
    manager = ModelManager.open(config, keyring)
    try:
        manager.save_model("m", b"data")
        assert manager.files.directory == config.model_dir.absolute()
        assert manager.db.path.name == "model_registry.db"
        assert not manager.db.path.read_bytes().startswith(b"SQLite format 3")
    finally:
        manager.db.close_all()


@pytest.mark.postgresql_only
def test_on_postgresql_every_replica_loads_what_any_replica_saved(config, keyring, db, tmp_path):
    keyring.save(config.keyring_path)
    first, second = ModelManager.open(config), ModelManager.open(config)  # two replicas' registries
    try:
        saved = first.save_model("shared", {"weights": [1, 2, 3]}, model_type="pickled object")
        assert second.load_model("shared", allow_pickle=True) == {"weights": [1, 2, 3]}
        assert second.get_active("shared")["checksum_sha256"] == saved["checksum_sha256"]
        assert first.files.directory is None and not config.model_dir.exists()
        blob = db.query_one("SELECT data FROM model_blobs")[0]
        assert hashlib.sha256(blob).hexdigest() == saved["checksum_sha256"]
    finally:
        first.db.close_all()
        second.db.close_all()
