#!/usr/bin/env python3
"""Key rotation, without downtime for field keys.

  python scripts/rotate_keys.py --new-field-key        # add a field-key version, make it active,
                                                       # then rewrap every subject key + settings value
  python scripts/rotate_keys.py --rewrap               # only rewrap what is not under the active key
  python scripts/rotate_keys.py --rekey-databases      # new SQLCipher key for every file (stop the service)

The running service reads old and new versions throughout a field-key rotation; restart it
after --new-field-key so it encrypts new data under the new version. See keys/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import os  # noqa: E402
from dataclasses import replace  # noqa: E402

from compliance.field_crypto import FieldCipher  # noqa: E402
from compliance.keyring import ENV_ACTIVE_FIELD_KEY, ENV_MASTER_SECRET, Keyring  # noqa: E402
from compliance.subject_keys import SubjectKeyStore  # noqa: E402
from twin import scripting  # noqa: E402
from twin.catalog import DATABASES, database_path, open_database  # noqa: E402
from twin.storage import Database, WrongKeyError  # noqa: E402
from twin.storage.maintenance import checkpoint  # noqa: E402


def build_parser():
    p = scripting.parser("Rotate field keys or rekey the databases.", log_level="INFO")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--new-field-key", action="store_true", help="add and activate a new field key, then rewrap")
    action.add_argument("--rewrap", action="store_true", help="rewrap everything not under the active field key")
    action.add_argument("--rekey-databases", action="store_true", help="give every database file a new SQLCipher key")
    p.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    return p


def _keyring_file(config) -> Path:
    if ENV_MASTER_SECRET in config.environ:
        raise scripting.ScriptError(
            f"keys come from {ENV_MASTER_SECRET}: raise {ENV_ACTIVE_FIELD_KEY} by one, restart, then run --rewrap "
            "(a database rekey needs a keyring file)")
    return config.keyring_path


def rewrap(config, keyring: Keyring, batch_size: int) -> None:
    cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
    vault = open_database("privacy_vault", config, keyring)
    keys = SubjectKeyStore(vault, cipher)
    remaining = keys.count_needing_rewrap()
    done = 0
    while n := keys.rewrap_batch(batch_size):
        done += n
        print(f"subject keys: rewrapped {done}/{remaining}", file=sys.stderr)
    vault.close_all()
    settings_db = open_database("settings", config, keyring)
    from twin.settings_store.store import SettingsStore
    rewrapped = SettingsStore(settings_db, cipher).rewrap_sensitive(batch_size)
    settings_db.close_all()
    print(f"rewrapped {done} subject keys and {rewrapped} sensitive settings under field key "
          f"v{keyring.active_field_key}")


def rekey_databases(config, keyring: Keyring) -> None:
    path = _keyring_file(config)
    if keyring.previous_database_key is None:
        # 1. Save the new key with the old one kept as "previous" before touching any file: a
        #    crash below leaves every file openable (open_database falls back to "previous"),
        #    and running this again resumes with the same new key.
        keyring = replace(keyring, database_key=os.urandom(32), previous_database_key=keyring.database_key)
        keyring.save(path)
    old, new = keyring.previous_database_key, keyring.database_key
    for spec in DATABASES.values():
        file = database_path(spec, config)
        if not file.exists():
            continue
        db = Database(file, old, name=spec.name)
        try:
            checkpoint(db, "TRUNCATE")
        except WrongKeyError:
            print(f"{spec.name}: already under the new key", file=sys.stderr)
            continue
        db.connection().execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
        db.close_all()
        print(f"{spec.name}: rekeyed", file=sys.stderr)
    # 2. Every file is under the new key: forget the old one.
    replace(keyring, previous_database_key=None).save(path)
    print("all databases rekeyed; back up the new keyring (keys/README.md)")


def main(args) -> int:
    config, keyring = scripting.load_config_and_keyring(must_exist=True)
    if args.new_field_key:
        keyring = keyring.with_new_field_key()
        keyring.save(_keyring_file(config))
        print(f"field key v{keyring.active_field_key} added and active; restart the service to use it",
              file=sys.stderr)
        rewrap(config, keyring, args.batch_size)
    elif args.rewrap:
        rewrap(config, keyring, args.batch_size)
    else:
        rekey_databases(config, keyring)
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
