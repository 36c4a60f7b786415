"""Vault migration 9: subject keys by key id, and leases of unbound keys.

Its own module only for size: ``compliance.vault_schema`` lists it with the others.
"""

# Subject keys by key id, and leases (compliance.subject_key_lease): a process leases a batch of
# fresh keys bound to no one (user_id_hash NULL, leased_to/lease_ends_at set) in one transaction,
# and a profile's row names the key it took, so creating a subject commits once. Keys made bound
# (and every key before v9) have their subject hash as key id: their wrapping's associated data,
# which names the key id, is unchanged.
_V9_TABLE = """CREATE TABLE {name} (
    key_id         TEXT PRIMARY KEY NOT NULL,  -- SQLite lets a TEXT primary key be NULL
    user_id_hash   TEXT UNIQUE,
    key_version    INTEGER NOT NULL,
    wrapped_key    {bytes} NOT NULL,
    created_at     {timestamp} NOT NULL,
    leased_to      TEXT,
    lease_ends_at  {timestamp},
    CHECK (user_id_hash IS NOT NULL OR lease_ends_at IS NOT NULL)
)"""
_V9_UNBOUND_INDEX = ("CREATE INDEX idx_subject_keys_unbound ON subject_keys (lease_ends_at) "
                     "WHERE user_id_hash IS NULL")
V9_UP = {
    "sqlite": "\n".join([
        _V9_TABLE.format(name="subject_keys_v9", bytes="BLOB", timestamp="TIMESTAMP") + ";",
        "INSERT INTO subject_keys_v9 (key_id, user_id_hash, key_version, wrapped_key, created_at) "
        "SELECT user_id_hash, user_id_hash, key_version, wrapped_key, created_at FROM subject_keys;",
        "DROP TABLE subject_keys;",
        "ALTER TABLE subject_keys_v9 RENAME TO subject_keys;",
        "CREATE INDEX idx_subject_keys_version ON subject_keys (key_version);",
        _V9_UNBOUND_INDEX + ";"]),
    "postgresql": "\n".join([
        "ALTER TABLE subject_keys ADD COLUMN key_id TEXT;",
        "UPDATE subject_keys SET key_id = user_id_hash;",
        "ALTER TABLE subject_keys DROP CONSTRAINT subject_keys_pkey;",
        "ALTER TABLE subject_keys ALTER COLUMN user_id_hash DROP NOT NULL;",
        "ALTER TABLE subject_keys ADD PRIMARY KEY (key_id);",
        "ALTER TABLE subject_keys ADD CONSTRAINT subject_keys_user_id_hash_key UNIQUE (user_id_hash);",
        "ALTER TABLE subject_keys ADD COLUMN leased_to TEXT;",
        "ALTER TABLE subject_keys ADD COLUMN lease_ends_at TEXT;",
        "ALTER TABLE subject_keys ADD CONSTRAINT subject_keys_bound_or_leased "
        "CHECK (user_id_hash IS NOT NULL OR lease_ends_at IS NOT NULL);",
        _V9_UNBOUND_INDEX + ";"]),
}
# Back to keys by subject hash: a key wrapped under its key id (every leased key) cannot be
# unwrapped by the older code, so those rows go (``twin db rollback`` lists them and wants --force).
V9_DOWN = {
    "sqlite": """
DELETE FROM subject_keys WHERE user_id_hash IS NULL OR key_id != user_id_hash;
CREATE TABLE subject_keys_v8 (
    user_id_hash  TEXT PRIMARY KEY,
    key_version   INTEGER NOT NULL,
    wrapped_key   BLOB NOT NULL,
    created_at    TIMESTAMP NOT NULL
);
INSERT INTO subject_keys_v8 SELECT user_id_hash, key_version, wrapped_key, created_at FROM subject_keys;
DROP TABLE subject_keys;
ALTER TABLE subject_keys_v8 RENAME TO subject_keys;
CREATE INDEX idx_subject_keys_version ON subject_keys (key_version);
""",
    "postgresql": """
DELETE FROM subject_keys WHERE user_id_hash IS NULL OR key_id != user_id_hash;
DROP INDEX idx_subject_keys_unbound;
ALTER TABLE subject_keys DROP CONSTRAINT subject_keys_bound_or_leased;
ALTER TABLE subject_keys DROP COLUMN lease_ends_at;
ALTER TABLE subject_keys DROP COLUMN leased_to;
ALTER TABLE subject_keys DROP CONSTRAINT subject_keys_user_id_hash_key;
ALTER TABLE subject_keys DROP CONSTRAINT subject_keys_pkey;
ALTER TABLE subject_keys ALTER COLUMN user_id_hash SET NOT NULL;
ALTER TABLE subject_keys ADD PRIMARY KEY (user_id_hash);
ALTER TABLE subject_keys DROP COLUMN key_id;
""",
}
