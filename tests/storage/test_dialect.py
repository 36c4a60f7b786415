"""The dialect: placeholder translation for psycopg (outside literals, identifiers, comments
and dollar-quoted bodies), a no-op on SQLite, and lock keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

from twin.storage.dialect import POSTGRESQL, SQLITE, RawSQL, lock_key, quote_identifier, to_pyformat


@pytest.mark.parametrize("ours, psycopgs", [
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("SELECT * FROM t WHERE a = :subject OR b = :cutoff_2", "SELECT * FROM t WHERE a = %(subject)s OR b = %(cutoff_2)s"),
    ("SELECT '? :x' , ?", "SELECT '? :x' , %s"),
    ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
    ('SELECT "odd?:col" FROM t WHERE x = ?', 'SELECT "odd?:col" FROM t WHERE x = %s'),
    ("SELECT 1 -- what? :no\nWHERE x = ?", "SELECT 1 -- what? :no\nWHERE x = %s"),
    ("/* ? :a */ SELECT ?", "/* ? :a */ SELECT %s"),
    ("SELECT $$ ? :a $$, $fn$ ? $fn$, ?", "SELECT $$ ? :a $$, $fn$ ? $fn$, %s"),
    ("SELECT x::text FROM t WHERE y = :y", "SELECT x::text FROM t WHERE y = %(y)s"),
    ("SELECT 5 % 2, '100%' WHERE a LIKE ?", "SELECT 5 %% 2, '100%%' WHERE a LIKE %s"),
])
def test_placeholders_are_rewritten_only_outside_literals_and_every_percent_is_doubled(ours, psycopgs):
    assert to_pyformat(ours) == psycopgs


def test_raw_sql_is_never_translated():
    raw = RawSQL("SELECT doc ? %s")
    assert to_pyformat(raw) is raw


def test_the_sqlite_dialect_hands_the_statement_over_untouched():
    statement = "SELECT ? , :name, '%'"
    assert SQLITE.sql(statement) is statement
    assert POSTGRESQL.sql(statement) == "SELECT %s , %(name)s, '%%'"


def test_lock_keys_are_stable_signed_64_bit_and_differ_by_name():
    assert lock_key("audit-chain") == lock_key("audit-chain")
    assert lock_key("audit-chain") != lock_key("retention")
    assert -2 ** 63 <= lock_key("x") < 2 ** 63


def test_identifiers_are_quoted_with_doubled_quotes():
    assert quote_identifier('we"ird') == '"we""ird"'


def test_the_sqlcipher_path_never_imports_the_postgresql_driver():
    code = ("import sys, twin.storage, twin.runtime, twin.api.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
