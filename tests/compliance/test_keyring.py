"""The keyring: how keys are generated, stored, loaded and derived, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.errors import KeyringError
from compliance.keyring import (ENV_ACTIVE_FIELD_KEY, ENV_MASTER_SECRET, DatabaseKey, Keyring,
                                KeyringMissingError, load_keyring)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _all_key_material(keyring: Keyring) -> list[bytes]:
    return [keyring.database_key, keyring.id_pepper, *keyring.field_keys.values()]


def _renderings(secret: bytes) -> list[str]:
    """The ways a key could leak into text: hex and base64."""
    return [secret.hex(), base64.b64encode(secret).decode()]


def _assert_no_key_material(text: str, secrets: list[bytes]) -> None:
    for secret in secrets:
        for rendering in _renderings(secret):
            assert rendering not in text
            assert rendering[:16] not in text


@pytest.fixture
def keyring_path(tmp_path):
    return tmp_path / "keys" / "keyring.json"


# -- generate, save, load ----------------------------------------------------------------

def test_generated_keyring_has_distinct_random_keys_and_field_key_1_active():
    keyring = Keyring.generate()
    assert keyring.active_field_key == 1
    assert sorted(keyring.field_keys) == [1]
    material = _all_key_material(keyring)
    assert all(len(k) == 32 for k in material)
    assert len(set(material)) == len(material)
    assert Keyring.generate().database_key != keyring.database_key


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


def test_a_generated_keyring_says_it_was_generated():
    assert Keyring.generate().source == "generated"
    assert Keyring.from_master_secret(os.urandom(32)).source == "environment"


def test_a_keyring_file_of_another_format_is_refused_naming_the_format_expected(keyring_path):
    text = json.dumps(dict(json.loads(Keyring.generate().to_json()), format="something-else/9"))

    with pytest.raises(KeyringError) as excinfo:
        Keyring.from_json(text)

    assert str(excinfo.value) == "keyring file format is not learner-twin-keyring/1"


def test_saved_keyring_file_is_mode_0600_in_a_0700_directory(keyring_path):
    Keyring.generate().save(keyring_path)
    assert _mode(keyring_path) == 0o600
    assert _mode(keyring_path.parent) == 0o700
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]  # no temp left


def test_saving_over_a_loose_file_tightens_it_to_0600(keyring_path):
    keyring_path.parent.mkdir()
    keyring_path.write_text("old")
    os.chmod(keyring_path, 0o644)
    Keyring.generate().save(keyring_path)
    assert _mode(keyring_path) == 0o600


@pytest.mark.parametrize("loose_mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_accessible_keyring_file_is_refused_in_production(keyring_path, loose_mode):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, loose_mode)
    with pytest.raises(KeyringError, match="chmod 600") as excinfo:
        Keyring.load(keyring_path, production=True)
    _assert_no_key_material(str(excinfo.value), _all_key_material(keyring))


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


# -- malformed files -----------------------------------------------------------------------

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


# -- the environment-variable form ------------------------------------------------------------

def _env(secret: bytes, **extra: str) -> dict[str, str]:
    return {ENV_MASTER_SECRET: base64.b64encode(secret).decode(), **extra}


def test_master_secret_derives_distinct_purpose_keys(keyring_path):
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    material = _all_key_material(keyring)
    assert len(set(material)) == len(material) == 3
    assert secret not in material
    assert keyring.source == "environment"
    assert not keyring_path.exists()  # nothing is written in this form


def test_master_secret_derivation_is_deterministic(keyring_path):
    secret = os.urandom(48)
    first = load_keyring(keyring_path, production=True, environ=_env(secret))
    second = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert first == second
    other = load_keyring(keyring_path, production=True, environ=_env(os.urandom(48)))
    assert other.database_key != first.database_key
    assert other.id_pepper != first.id_pepper


def _hkdf_sha256(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256 for one 32-byte block, from the standard library alone."""
    extracted = hmac.new(salt, secret, hashlib.sha256).digest()
    return hmac.new(extracted, info + b"\x01", hashlib.sha256).digest()


def test_master_secret_derivation_is_pinned_to_hkdf_sha256_under_its_salt_and_labels(keyring_path):
    """Every deployment in the environment-variable form opens its data with these exact keys:
    a changed salt or label would make every database and every sealed value unreadable."""
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret, **{ENV_ACTIVE_FIELD_KEY: "2"}))

    def derived(label: str) -> bytes:
        return _hkdf_sha256(secret, b"learner-twin/keyring/v1", label.encode())

    assert keyring.database_key == derived("sqlcipher-database-key")
    assert keyring.id_pepper == derived("user-id-pepper")
    assert keyring.field_keys == {1: derived("field-key/v1"), 2: derived("field-key/v2")}
    assert keyring.audit_seal_key == _hkdf_sha256(keyring.id_pepper, b"learner-twin/keyring/v1",
                                                  b"audit-chain-seal-key")


def test_raising_the_field_key_version_keeps_older_versions_derivable(keyring_path):
    secret = os.urandom(32)
    v1 = load_keyring(keyring_path, production=True, environ=_env(secret))
    v3 = load_keyring(keyring_path, production=True,
                      environ=_env(secret, **{ENV_ACTIVE_FIELD_KEY: "3"}))
    assert v3.active_field_key == 3
    assert sorted(v3.field_keys) == [1, 2, 3]
    assert v3.field_keys[1] == v1.field_keys[1]
    assert len(set(v3.field_keys.values())) == 3
    assert v3.database_key == v1.database_key and v3.id_pepper == v1.id_pepper


def test_master_secret_takes_precedence_over_a_keyring_file(keyring_path):
    Keyring.generate().save(keyring_path)
    secret = os.urandom(32)
    keyring = load_keyring(keyring_path, production=True, environ=_env(secret))
    assert keyring == Keyring.from_master_secret(secret)


@pytest.mark.parametrize("bad", ["not base64 at all!", "abc", "ZmFrZQ=x",
                                 # a real 32-byte secret with one stray character: never silently dropped
                                 base64.b64encode(b"s" * 32).decode()[:20] + "*" + base64.b64encode(b"s" * 32).decode()[20:]])
def test_invalid_base64_master_secret_is_refused_without_echoing_it(keyring_path, bad):
    with pytest.raises(KeyringError, match="not valid base64") as excinfo:
        load_keyring(keyring_path, production=False, environ={ENV_MASTER_SECRET: bad})
    assert bad not in str(excinfo.value)


def test_short_master_secret_is_refused_without_echoing_it(keyring_path):
    secret = os.urandom(16)
    with pytest.raises(KeyringError, match="at least 32 bytes") as excinfo:
        load_keyring(keyring_path, production=False, environ=_env(secret))
    _assert_no_key_material(str(excinfo.value), [secret])


@pytest.mark.parametrize("version", ["zero", "0", "-1"])
def test_invalid_field_key_version_is_refused(keyring_path, version):
    with pytest.raises(KeyringError, match=ENV_ACTIVE_FIELD_KEY):
        load_keyring(keyring_path, production=False,
                     environ=_env(os.urandom(32), **{ENV_ACTIVE_FIELD_KEY: version}))


# -- load_keyring without any keyring ----------------------------------------------------------

def test_development_set_up_generates_a_private_keyring_with_a_warning(keyring_path, caplog):
    with caplog.at_level(logging.WARNING, logger="compliance.keyring"):
        keyring = load_keyring(keyring_path, production=False, environ={}, create=True)
    assert keyring_path.exists()
    assert _mode(keyring_path) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"no keyring found; generated a DEVELOPMENT keyring at {keyring_path}. Back it up: data "
        "written with it is unreadable without it."]
    # The next start finds the same keys instead of generating new ones.
    assert load_keyring(keyring_path, production=False, environ={}, create=True) == keyring
    assert load_keyring(keyring_path, production=False, environ={}) == keyring


def test_without_create_a_missing_keyring_is_refused_saying_where_it_looked(keyring_path):
    with pytest.raises(KeyringMissingError) as excinfo:
        load_keyring(keyring_path, production=False, environ={})
    message = str(excinfo.value)
    assert str(keyring_path.absolute()) in message and "\n" not in message
    assert "TWIN_KEYRING_PATH" in message and ENV_MASTER_SECRET in message
    assert message.endswith("or create one with `twin keys generate`")  # no production remark
    assert not keyring_path.exists() and not keyring_path.parent.exists()


# Each worker announces it is ready, waits for the starting gun, then loads (and so generates).
_RACER = """
import base64, os, sys, time
from compliance.keyring import load_keyring
path, go = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0002)
keyring = load_keyring(path, production=False, environ={}, create=True)
print(base64.b64encode(keyring.database_key).decode(), flush=True)
"""


def test_processes_starting_together_all_end_with_the_one_same_generated_keyring(keyring_path, tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != ENV_MASTER_SECRET}
    env["PYTHONPATH"] = str(root)
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _RACER, str(keyring_path), str(go)], env=env,
                                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(8)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    go.touch()
    results = [worker.communicate(timeout=60) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err
    keys = {out.strip() for out, _ in results}
    assert keys == {base64.b64encode(Keyring.load(keyring_path, production=False).database_key).decode()}
    assert _mode(keyring_path) == 0o600
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]  # no temp left


def test_saving_leaves_no_temporary_file_and_replaces_an_existing_keyring(keyring_path):
    Keyring.generate().save(keyring_path)
    rotated = Keyring.generate()
    rotated.save(keyring_path)
    assert Keyring.load(keyring_path, production=False) == rotated
    assert [p.name for p in keyring_path.parent.iterdir()] == [keyring_path.name]


def test_production_refuses_to_start_without_a_keyring(keyring_path):
    with pytest.raises(KeyringError, match=ENV_MASTER_SECRET) as excinfo:
        load_keyring(keyring_path, production=True, environ={}, create=True)
    assert str(excinfo.value).endswith(
        "or create one with `twin keys generate` (TWIN_ENV=production never generates one)")
    assert not keyring_path.exists()


def test_production_refuses_a_group_readable_keyring_file_it_is_pointed_at(keyring_path):
    keyring = Keyring.generate()
    keyring.save(keyring_path)
    os.chmod(keyring_path, 0o640)

    with pytest.raises(KeyringError, match="chmod 600") as excinfo:
        load_keyring(keyring_path, production=True, environ={})
    _assert_no_key_material(str(excinfo.value), _all_key_material(keyring))


def test_a_keyring_is_saved_into_directories_that_do_not_exist_yet(tmp_path):
    path = tmp_path / "etc" / "twin" / "keys" / "keyring.json"

    Keyring.generate().save(path)

    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


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
    assert _mode(keyring_path) == 0o600


def test_load_keyring_reads_the_process_environment_by_default(keyring_path, monkeypatch):
    secret = os.urandom(32)
    monkeypatch.setenv(ENV_MASTER_SECRET, base64.b64encode(secret).decode())
    assert load_keyring(keyring_path, production=True) == Keyring.from_master_secret(secret)


# -- no key material in representations --------------------------------------------------------

def test_repr_and_str_show_no_key_material():
    keyring = Keyring.generate().with_new_field_key()
    for text in (repr(keyring), str(keyring), f"{keyring}"):
        _assert_no_key_material(text, _all_key_material(keyring))
        assert "field_key_versions=[1, 2]" in text


def test_the_database_key_shows_only_whether_a_previous_key_is_held():
    current, previous = os.urandom(32), os.urandom(32)

    assert repr(DatabaseKey(current)) == "DatabaseKey(<hidden>, previous=None)"
    assert repr(DatabaseKey(current, previous)) == "DatabaseKey(<hidden>, previous=<hidden>)"
    _assert_no_key_material(repr(DatabaseKey(current, previous)), [current, previous])


def test_field_key_fingerprints_name_each_version_without_its_key():
    keyring = Keyring.generate().with_new_field_key()

    fingerprints = keyring.field_key_fingerprints()

    assert list(fingerprints) == [1, 2]
    for version, key in keyring.field_keys.items():
        assert fingerprints[version] == hmac.new(key, b"learner-twin/key-fingerprint/v1",
                                                 hashlib.sha256).hexdigest()[:16]
    assert fingerprints[1] != fingerprints[2]
    _assert_no_key_material(json.dumps(fingerprints), _all_key_material(keyring))


def test_a_new_field_key_keeps_an_unfinished_rekeys_previous_key_and_the_source(keyring_path):
    rekeying = Keyring(os.urandom(32), {1: os.urandom(32)}, 1, os.urandom(32),
                       previous_database_key=os.urandom(32), source=str(keyring_path))

    rotated = rekeying.with_new_field_key()

    assert rotated.previous_database_key == rekeying.previous_database_key  # a crash mid-rekey stays openable
    assert rotated.database_keys.previous == rekeying.previous_database_key
    assert rotated.source == str(keyring_path)
    assert rotated.field_keys[1] == rekeying.field_keys[1] and rotated.active_field_key == 2


def test_saving_a_new_keyring_over_an_existing_one_writes_nothing(keyring_path):
    first = Keyring.generate()
    assert first.save_new(keyring_path) is True

    assert Keyring.generate().save_new(keyring_path) is False

    assert Keyring.load(keyring_path, production=True) == first
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]  # no temp left


def test_keyring_rejects_keys_of_the_wrong_length():
    with pytest.raises(KeyringError, match="^database key and ID pepper must be 32 bytes$") as excinfo:
        Keyring(database_key=os.urandom(16), field_keys={1: os.urandom(32)}, active_field_key=1,
                id_pepper=os.urandom(32))
    with pytest.raises(KeyringError, match="^database key and ID pepper must be 32 bytes$") as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32)}, active_field_key=1,
                id_pepper=os.urandom(33))
    with pytest.raises(KeyringError, match=r"^field keys must be 32 bytes under versions 1\.\.2\*\*32-1$"):
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(31)}, active_field_key=1,
                id_pepper=os.urandom(32))


@pytest.mark.parametrize("version", [0, -1, 2**32, 2**33, 2.5, "2"])
def test_field_key_versions_outside_1_to_2_to_the_32_minus_1_are_refused(version):
    with pytest.raises(KeyringError) as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32), version: os.urandom(32)},
                active_field_key=1, id_pepper=os.urandom(32))
    assert str(excinfo.value) == "field keys must be 32 bytes under versions 1..2**32-1"


@pytest.mark.parametrize("version", [1, 65, 2**24, 2**32 - 1])
def test_field_key_versions_up_to_2_to_the_32_minus_1_are_accepted(version):
    keyring = Keyring(database_key=os.urandom(32), field_keys={version: os.urandom(32)},
                      active_field_key=version, id_pepper=os.urandom(32))
    assert keyring.active_field_key == version


def test_an_active_field_key_missing_from_the_keyring_is_refused_naming_its_version():
    with pytest.raises(KeyringError) as excinfo:
        Keyring(database_key=os.urandom(32), field_keys={1: os.urandom(32)}, active_field_key=3,
                id_pepper=os.urandom(32))
    assert str(excinfo.value) == "active field key version 3 is not in the keyring"


def test_a_malformed_keyring_file_is_named_by_the_kind_of_fault_only():
    doc = json.loads(Keyring.generate().to_json())
    del doc["id_pepper"]

    with pytest.raises(KeyringError) as excinfo:
        Keyring.from_json(json.dumps(doc))

    assert str(excinfo.value) == "keyring file is malformed (KeyError)"
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_a_development_start_that_loses_the_race_to_a_loose_copied_keyring_loads_it_with_a_warning(
        keyring_path, monkeypatch, caplog):
    """Between finding no keyring and publishing its own, an operator copies one in with
    `cp` (mode 0644): development loads theirs (with the mode warning), it never refuses."""
    copied = Keyring.generate()
    publish = Keyring.save_new

    def copied_in_first(self, path):
        copied.save(path)
        os.chmod(path, 0o644)
        return publish(self, path)

    monkeypatch.setattr(Keyring, "save_new", copied_in_first)
    with caplog.at_level(logging.WARNING):
        loaded = load_keyring(keyring_path, production=False, environ={}, create=True)

    assert loaded == copied
    assert any("readable by group/others (mode 644)" in r.getMessage() for r in caplog.records)
