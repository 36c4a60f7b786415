"""The SQL dialect of each backend, owned by the storage core alone.

Our SQL is written once, in SQLite's placeholder style (``?`` and ``:name``), and runs as is on
SQLCipher: the SQLite dialect translates nothing (the hot path stays the driver's own).
On PostgreSQL, ``to_pyformat`` rewrites placeholders for psycopg (``%s``, ``%(name)s``) and
doubles every ``%`` (psycopg reads one anywhere as a placeholder); placeholders are rewritten
only outside string literals, quoted identifiers, comments and
dollar-quoted bodies; ``::type`` casts are left alone. SQL written for PostgreSQL only, in
psycopg's own style (e.g. using the jsonb ``?`` operator), is wrapped in ``RawSQL`` and passed
through untouched.

What differs and how a schema or query spells it on each backend is listed in DIALECT.md
beside this file; the column types below are the vocabulary migrations compose DDL from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


class RawSQL(str):
    """SQL already in the driver's placeholder style: never translated."""


# One alternation, tried left to right at each position: a literal, an identifier, a comment
# or a dollar-quoted body is matched whole and copied (with '%' doubled), so only placeholders
# outside them are rewritten.
_TOKENS = re.compile(r"""
    (?P<literal>'(?:[^']|'')*'?)               # 'it''s' (an unterminated one runs to the end)
  | (?P<ident>"(?:[^"]|"")*"?)                 # "Quoted Identifier"
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*.*?(?:\*/|\Z))
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$.*?(?:\$(?P=tag)?\$|\Z))
  | (?P<cast>::)                               # PostgreSQL cast, not a named parameter
  | (?P<named>(?<![:\w]):(?P<name>[A-Za-z_][A-Za-z_0-9]*))
  | (?P<positional>\?)
  | (?P<percent>%)
""", re.VERBOSE | re.DOTALL)

_cache: dict[str, str] = {}

# The format of timestamps.to_db (``2026-11-22T02:30:00.123456Z``), as each dialect checks it.
_ISO_GLOB = ("'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T"
             "[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'")
_ISO_REGEX = r"'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$'"

# Where PostgreSQL keeps the high-water mark of an identity column (see identity_high_water).
HIGH_WATER_TABLE = "identity_high_water"
_CACHE_LIMIT = 4096


def to_pyformat(sql: str) -> str:
    """``sql`` with ``?`` -> ``%s``, ``:name`` -> ``%(name)s`` and ``%`` -> ``%%``.

    Cached per statement text: services run the same few hundred statements over and over.
    """
    if isinstance(sql, RawSQL):
        return sql
    cached = _cache.get(sql)
    if cached is not None:
        return cached
    translated = _TOKENS.sub(_replace, sql)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[sql] = translated
    return translated


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "positional":
        return "%s"
    if kind == "named":
        return f"%({match.group('name')})s"
    # psycopg reads every '%' as a placeholder, inside literals and comments too.
    return match.group(0).replace("%", "%%")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a named lock (PostgreSQL advisory locks take bigints)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class Dialect:
    """What a schema or query must spell differently on one backend.

    The type attributes are column types with the same meaning on both backends (e.g. REAL is
    8 bytes in SQLite but 4 in PostgreSQL, so ``float`` is ``DOUBLE PRECISION`` there).
    """

    name: str
    identity: str          # an auto-numbered integer primary key
    bigint: str            # a 64-bit integer (SQLite's INTEGER; PostgreSQL's INTEGER is 32-bit)
    float: str             # an 8-byte float
    bytes: str             # binary data (ciphertext, hashes, vectors)
    json: str              # a JSON document (TEXT in SQLite, checked with json_valid())
    timestamp: str         # our fixed-width ISO-8601 UTC text (timestamps.to_db), on both
    boolean: str
    now: str               # the current time as timestamps.to_db() writes it, as an SQL default
    placeholder_style: str  # "qmark" (the driver takes our SQL as is) or "pyformat"
    # Row locks a SELECT ends with, for READ COMMITTED writers (``write(fn, lock=...)``) whose
    # decisions rest on rows that writers without that lock may change. Empty on SQLite,
    # whose one write lock already holds every row still.
    for_update: str        # the rows read will be updated: others' updates and deletes wait
    for_key_share: str     # the row must stay (a parent): its deletion waits, updates do not

    @property
    def translates(self) -> bool:
        return self.placeholder_style != "qmark"

    def sql(self, statement: str) -> str:
        """The statement as this dialect's driver takes it."""
        return to_pyformat(statement) if self.translates else statement

    def timestamp_column(self, column: str, *, nullable: bool = False) -> str:
        """The definition of a column of ``timestamps.to_db`` text whose format a CHECK
        enforces (GLOB on SQLite, a regular expression on PostgreSQL), so text order is time
        order; NOT NULL with the ``now`` default unless ``nullable``."""
        check = f"{column} GLOB {_ISO_GLOB}" if self.name == "sqlite" else f"{column} ~ {_ISO_REGEX}"
        if nullable:
            return f"{column} TEXT CHECK ({column} IS NULL OR {check})"
        return f"{column} TEXT NOT NULL DEFAULT {self.now} CHECK ({check})"

    def identity_high_water(self, table: str, column: str) -> str:
        """An SQL expression: the highest value ever stored in the identity ``column`` of
        ``table`` (NULL before the first row), which deleting the newest rows does not lower
        and a rolled-back insert does not raise. SQLite keeps it for AUTOINCREMENT tables
        (``sqlite_sequence``, explicit values included); on PostgreSQL the table needs the
        trigger of ``high_water_ddl`` (a sequence would miss explicit values, and ``setval``
        is not undone by a rollback)."""
        if self.name == "sqlite":
            return f"(SELECT seq FROM sqlite_sequence WHERE name = '{table}')"
        return f"(SELECT value FROM {HIGH_WATER_TABLE} WHERE table_name = '{table}')"

    def high_water_ddl(self, table: str, column: str) -> str:
        """The DDL that keeps ``identity_high_water`` of ``table`` on this backend (nothing on
        SQLite): one statement-level trigger, no extra round trip per insert."""
        if self.name == "sqlite":
            return ""
        function = f"{table}_high_water"
        return f"""CREATE TABLE IF NOT EXISTS {HIGH_WATER_TABLE} (
    table_name TEXT PRIMARY KEY,
    value      BIGINT NOT NULL
);
INSERT INTO {HIGH_WATER_TABLE} (table_name, value) SELECT '{table}', max({column}) FROM {table}
    HAVING max({column}) IS NOT NULL ON CONFLICT (table_name) DO NOTHING;
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    INSERT INTO {HIGH_WATER_TABLE} (table_name, value) SELECT '{table}', max({column}) FROM new_rows
        HAVING max({column}) IS NOT NULL
        ON CONFLICT (table_name) DO UPDATE SET value = GREATEST({HIGH_WATER_TABLE}.value, excluded.value);
    RETURN NULL;
END $$;
CREATE TRIGGER {function} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();"""


SQLITE = Dialect(
    name="sqlite",
    identity="INTEGER PRIMARY KEY AUTOINCREMENT",
    bigint="INTEGER",
    float="REAL",
    bytes="BLOB",
    json="TEXT",
    timestamp="TEXT",
    boolean="BOOLEAN",
    now="(strftime('%Y-%m-%dT%H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000Z')",
    placeholder_style="qmark",
    for_update="",
    for_key_share="",
)

POSTGRESQL = Dialect(
    name="postgresql",
    identity="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    bigint="BIGINT",
    float="DOUBLE PRECISION",
    bytes="BYTEA",
    json="JSONB",
    timestamp="TEXT",
    boolean="BOOLEAN",
    now="(to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))",
    placeholder_style="pyformat",
    for_update=" FOR UPDATE",
    for_key_share=" FOR KEY SHARE",
)

DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}


# SQLite column types of the schemas written before the dialect vocabulary, and their
# PostgreSQL meaning (DIALECT.md): SQLite's INTEGER and REAL are 8 bytes, PostgreSQL's 4.
_SQLITE_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), POSTGRESQL.identity),
    (re.compile(r"\bTIMESTAMP DEFAULT CURRENT_TIMESTAMP\b", re.I), f"TEXT DEFAULT {POSTGRESQL.now}"),
    (re.compile(r"\bTIMESTAMP\b", re.I), POSTGRESQL.timestamp),
    (re.compile(r"\bINTEGER\b", re.I), POSTGRESQL.bigint),
    (re.compile(r"\bREAL\b", re.I), POSTGRESQL.float),
    (re.compile(r"\bBLOB\b", re.I), POSTGRESQL.bytes),
)


def postgresql_ddl(sqlite_ddl: str) -> str:
    """A schema script written in SQLite's column types, in PostgreSQL's.

    For the migrations written before the dialect vocabulary: their SQLite text is frozen
    (databases were created from it), and this gives their PostgreSQL form from the same
    text, so the two cannot drift. Only column types are rewritten; what SQLite alone has
    (triggers with RAISE, FTS5, json_valid checks) needs an explicit PostgreSQL step.
    """
    for pattern, replacement in _SQLITE_TYPES:
        sqlite_ddl = pattern.sub(replacement.replace("\\", "\\\\"), sqlite_ddl)
    return sqlite_ddl


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (the same rule on both backends)."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain NUL")
    return '"' + name.replace('"', '""') + '"'
