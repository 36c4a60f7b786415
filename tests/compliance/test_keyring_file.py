"""The keyring file: saved as the documented JSON, private (0600 in a 0700 directory) from its
creation, loaded back identical, and refused (without echoing key bytes) when loose or malformed."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

from compliance.errors import KeyringError
from compliance.keyring import Keyring
from keyring_checks import all_key_material, assert_no_key_material, mode


def test_saved_keyring_loads_back_identical(keyring_path):
    keyring = Keyring.generate().with_new_field_key()
    keyring.save(keyring_path)
    loaded = Keyring.load(keyring_path, production=True)
    assert loaded == keyring
    assert loaded.field_keys == keyring.field_keys
    assert loaded.active_field_key == 2


def test_the_keyring_file_is_the_documented_indented_json_and_keeps_an_unfinished_rekey(keyring_path):
    keyring = Keyring(os.urandom(32), {1: os.urandom(32), 2: os.urandom(32)}, 2, os.urandom(32),
                      previous_database_key=os.urandom(32))
    keyring.save(keyring_path)

    text = keyring_path.read_text()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    assert text == json.dumps({
        "format": "learner-twin-keyring/1", "database_key": b64(keyring.database_key),
        "field_keys": {"1": b64(keyring.field_keys[1]), "2": b64(keyring.field_keys[2])},
        "active_field_key": 2, "id_pepper": b64(keyring.id_pepper),
        "previous_database_key": b64(keyring.previous_database_key)}, indent=2)
    loaded = Keyring.load(keyring_path, production=True)
    assert loaded.previous_database_key == keyring.previous_database_key  # a crash mid-rekey stays openable
    assert loaded.source == str(keyring_path)
    assert Keyring.from_json(text).source == "file"
    assert "previous_database_key" not in Keyring.generate().to_json()


def test_a_keyring_file_of_another_format_is_refused_naming_the_format_expected(keyring_path):
    text = json.dumps(dict(json.loads(Keyring.generate().to_json()), format="something-else/9"))

    with pytest.raises(KeyringError) as excinfo:
        Keyring.from_json(text)

    assert str(excinfo.value) == "keyring file format is not learner-twin-keyring/1"


def test_saved_keyring_file_is_mode_0600_in_a_0700_directory(keyring_path):
    Keyring.generate().save(keyring_path)
    assert mode(keyring_path) == 0o600
    assert mode(keyring_path.parent) == 0o700
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]  # no temp left


def test_saving_over_a_loose_file_tightens_it_to_0600(keyring_path):
    keyring_path.parent.mkdir()
    keyring_path.write_text("old")
    os.chmod(keyring_path, 0o644)
    Keyring.generate().save(keyring_path)
    assert mode(keyring_path) == 0o600


@pytest.mark.parametrize("loose_mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_accessible_keyring_file_is_refused_in_production(keyring_path, loose_mode):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, loose_mode)
    with pytest.raises(KeyringError, match="chmod 600") as excinfo:
        Keyring.load(keyring_path, production=True)
    assert_no_key_material(str(excinfo.value), all_key_material(keyring))


def test_group_readable_keyring_file_loads_with_a_warning_in_development(keyring_path, caplog):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, 0o644)
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        loaded = Keyring.load(keyring_path, production=False)
    assert loaded == keyring
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "readable by group/others" in warnings[0].getMessage()


def test_private_keyring_file_loads_without_warning(keyring_path, caplog):
    Keyring.generate().save(keyring_path)
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        Keyring.load(keyring_path, production=True)
    assert caplog.records == []


def test_missing_keyring_file_gives_keyring_error(keyring_path):
    with pytest.raises(KeyringError, match="cannot read keyring file"):
        Keyring.load(keyring_path, production=False)


def _malformed_documents() -> dict[str, tuple[str, list[str]]]:
    """Broken keyring files, each with the key strings it holds (which must not leak)."""
    doc = json.loads(Keyring.generate().to_json())
    keys = [doc["database_key"], doc["id_pepper"], *doc["field_keys"].values()]
    short = base64.b64encode(os.urandom(16)).decode()
    without_pepper = {k: v for k, v in doc.items() if k != "id_pepper"}
    cases = {
        "not json": "{this is not json",
        "json list": json.dumps([1, 2, 3]),
        "missing pepper": json.dumps(without_pepper),
        "bad base64": json.dumps(dict(doc, database_key="not base64 !!")),
        "stray character": json.dumps(dict(doc, id_pepper=doc["id_pepper"][:8] + "*" + doc["id_pepper"][8:])),
        "short key": json.dumps(dict(doc, database_key=short)),
        "wrong format": json.dumps(dict(doc, format="something-else/9")),
        "active key absent": json.dumps(dict(doc, active_field_key=7)),
        "non-integer version": json.dumps(dict(doc, field_keys={"one": doc["field_keys"]["1"]})),
    }
    return {name: (text, keys + [short]) for name, text in cases.items()}


@pytest.mark.parametrize("case", sorted(_malformed_documents()))
def test_malformed_keyring_file_gives_keyring_error_without_key_bytes(keyring_path, case):
    text, secrets = _malformed_documents()[case]
    keyring_path.parent.mkdir(mode=0o700)
    fd = os.open(keyring_path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    with pytest.raises(KeyringError) as excinfo:
        Keyring.load(keyring_path, production=True)
    message = str(excinfo.value)
    assert message
    for secret in secrets:
        assert secret[:12] not in message


def test_saving_leaves_no_temporary_file_and_replaces_an_existing_keyring(keyring_path):
    Keyring.generate().save(keyring_path)
    rotated = Keyring.generate()
    rotated.save(keyring_path)
    assert Keyring.load(keyring_path, production=False) == rotated
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]


def test_a_keyring_is_saved_into_directories_that_do_not_exist_yet(tmp_path):
    path = tmp_path / "etc" / "twin" / "keys" / "keyring.json"

    Keyring.generate().save(path)

    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_the_keyring_file_is_private_from_its_creation_not_only_once_written(keyring_path, monkeypatch):
    """A reader that opens the file while it is briefly looser keeps reading it after the chmod:
    the file must be created 0600, whatever the umask, before a key byte is in it."""
    modes_at_chmod = []
    real_fchmod = os.fchmod

    def recording_fchmod(fd, mode):
        modes_at_chmod.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", recording_fchmod)
    old_umask = os.umask(0)
    try:
        Keyring.generate().save(keyring_path)
    finally:
        os.umask(old_umask)

    assert modes_at_chmod == [0o600]
    assert mode(keyring_path) == 0o600


def test_saving_a_new_keyring_over_an_existing_one_writes_nothing(keyring_path):
    first = Keyring.generate()
    assert first.save_new(keyring_path) is True

    assert Keyring.generate().save_new(keyring_path) is False

    assert Keyring.load(keyring_path, production=True) == first
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]  # no temp left
