"""The deployment's keyring as the vault records it: fingerprints only; a process whose keyring
has another pepper, lacks or changed a recorded field key, or encrypts under a version never
distributed is refused with one line naming fingerprints; rotation is distribute, then activate."""

from __future__ import annotations

import json

import pytest

from compliance import keyring_record
from compliance.keyring import Keyring
from compliance.keyring_record import KeyringMismatchError
from twin.storage.fingerprint import key_fingerprint


@pytest.fixture
def vault(runtime):
    runtime.vault_db.execute("DELETE FROM keyring_record")  # a vault no `twin db setup` has recorded
    return runtime.vault_db


def with_keys(keyring: Keyring, field_keys: dict[int, bytes], active: int) -> Keyring:
    return Keyring(database_key=keyring.database_key, field_keys=field_keys, active_field_key=active,
                   id_pepper=keyring.id_pepper, source="generated")


def refusal(vault, keyring: Keyring) -> str:
    with pytest.raises(KeyringMismatchError) as refused:
        keyring_record.check(vault, keyring)
    return str(refused.value)


def test_the_vault_records_fingerprints_of_the_keyring_never_its_keys(vault):
    keyring = Keyring.generate().with_new_field_key()
    assert keyring_record.recorded(vault) is None

    keyring_record.record(vault, keyring)

    fps = {str(v): key_fingerprint(k) for v, k in keyring.field_keys.items()}
    row = vault.query_one("SELECT pepper_fingerprint, field_keys, active_field_key FROM keyring_record")
    assert (row[0], row[1], row[2]) == (key_fingerprint(keyring.id_pepper), json.dumps(fps, sort_keys=True), 2)
    assert keyring_record.recorded(vault) == {"pepper": key_fingerprint(keyring.id_pepper),
                                              "field_keys": fps, "active_field_key": 2}
    stored = " ".join(str(v) for v in row)
    assert not any(k.hex() in stored for k in (keyring.id_pepper, keyring.database_key, *keyring.field_keys.values()))
    keyring_record.check(vault, keyring)  # the recorded keyring is taken


def test_a_vault_with_no_record_refuses_every_keyring(vault):
    assert refusal(vault, Keyring.generate()) == \
        "the vault records no keyring: run `twin db setup` with the deployment's keyring first"


def test_a_keyring_with_another_pepper_is_refused_by_check_and_by_record(vault):
    deployment, other = Keyring.generate(), Keyring.generate()
    keyring_record.record(vault, deployment)
    expected = (f"this keyring (ID pepper fingerprint {key_fingerprint(other.id_pepper)}) is not the "
                f"deployment's (the vault records {key_fingerprint(deployment.id_pepper)}): copy the "
                "deployment's keyring here")

    assert refusal(vault, other) == expected
    with pytest.raises(KeyringMismatchError, match=r"ID pepper"):
        keyring_record.record(vault, other)
    assert keyring_record.recorded(vault)["pepper"] == key_fingerprint(deployment.id_pepper)


def test_a_keyring_lacking_a_distributed_version_is_refused_naming_the_lowest_missing(vault):
    deployment = Keyring.generate()
    for _ in range(9):  # versions 1 to 10: the lowest missing is v2, not "10" (text order)
        deployment = deployment.with_new_field_key()
    keyring_record.record(vault, deployment)
    old = with_keys(deployment, {1: deployment.field_keys[1]}, 1)
    fps = {str(v): key_fingerprint(k) for v, k in deployment.field_keys.items()}
    assert vault.query_one("SELECT field_keys FROM keyring_record")[0] == json.dumps(fps, sort_keys=True)

    assert refusal(vault, old) == (f"this keyring lacks field key v2 (fingerprint "
                                   f"{key_fingerprint(deployment.field_keys[2])}), which the deployment has "
                                   "distributed: copy the current keyring here")
    with pytest.raises(KeyringMismatchError, match="lacks field key v2"):
        keyring_record.record(vault, old)


def test_a_keyring_whose_field_key_changed_is_refused(vault):
    deployment = Keyring.generate()
    keyring_record.record(vault, deployment)
    changed = with_keys(deployment, {1: bytes(32)}, 1)

    assert refusal(vault, changed) == (f"this keyring's field key v1 (fingerprint {key_fingerprint(bytes(32))}) "
                                       f"is not the deployment's ({key_fingerprint(deployment.field_keys[1])})")
    with pytest.raises(KeyringMismatchError, match="is not the deployment's"):
        keyring_record.record(vault, changed)


def test_rotation_distributes_a_version_before_any_process_encrypts_under_it(vault):
    deployment = Keyring.generate()
    keyring_record.record(vault, deployment)
    rotated = deployment.with_new_field_key()            # v2 active
    distributed = with_keys(rotated, rotated.field_keys, 1)  # v2 held, v1 still active

    assert refusal(vault, rotated) == ("this keyring encrypts under field key v2, which was never "
                                       "distributed: run `twin keys rotate --distribute-field-key` "
                                       "first (keys/README.md)")
    keyring_record.record(vault, distributed)            # step 1: distribute
    assert keyring_record.recorded(vault)["active_field_key"] == 1
    keyring_record.check(vault, distributed)
    keyring_record.check(vault, rotated)                 # a replica that activated early is taken
    assert "lacks field key v2" in refusal(vault, deployment)
    keyring_record.record(vault, rotated)                # step 2: activate
    assert keyring_record.recorded(vault)["active_field_key"] == 2


def test_set_up_may_record_a_keyring_that_activates_a_version_in_the_same_step(vault):
    """`twin db setup` or a copy to a new server records the keyring as it is: nothing ran under
    the old record that could meet a version it lacks."""
    deployment = Keyring.generate()
    keyring_record.record(vault, deployment)
    rotated = deployment.with_new_field_key()

    keyring_record.record(vault, rotated)

    assert keyring_record.recorded(vault)["active_field_key"] == 2
    keyring_record.check(vault, rotated)
