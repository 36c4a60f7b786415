"""The shape of a table that holds personal data: one descriptor, from which everything follows.

A ``PersonalTable`` names every column of its table and what kind it is (clear, sealed under the
subject's key, JSON, key, timestamp, the subject hash, or something else with the reason), the
row id bound into each ciphertext, how a row belongs to its subject, its retention rule and its
export name. From it come:

- the statements its owner runs (``insert_sql``, ``update_sql``, ``upsert_sql``, ``select_list``)
  and the ones compliance runs (``subject_where``, ``expired_where``, ``live_where``), all in one
  place per table, with ``?`` and ``:name`` placeholders (the storage core's dialect);
- the decoding of a stored row (``decode``: sealed columns opened, JSON parsed, NULL read as the
  column's ``null_as``), used alike by the owner's views and by the DSR export (``export_row``);
- the personal-data declaration the registry and its coverage test read.

Adding a sealed column is a migration plus one ``sealed(...)`` line here in the table's
descriptor (plus the API schema if it is exposed). The coverage test compares every descriptor
with the live migrated schema, so a column nobody classified fails the suite.
"""

from __future__ import annotations

import functools
import json
import operator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

from .errors import ComplianceError


class RegistryError(ComplianceError):
    """A personal-data declaration is inconsistent."""


class Kind(str, Enum):
    CLEAR = "clear"            # stored as given; queries filter or sort on it
    SEALED = "sealed"          # AES-GCM under the subject's key, bound to table/column/row
    JSON = "json"              # JSON text in clear
    KEY = "key"                # an identifier (primary or foreign key, opaque id)
    TIMESTAMP = "timestamp"    # ISO-8601 UTC text
    SUBJECT_HASH = "subject_hash"  # the keyed hash of the subject's user id
    OTHER = "other"            # bookkeeping; ``why`` says what it is


@dataclass(frozen=True, eq=False)
class Column:
    name: str
    kind: Kind
    null_as: Any = None        # what NULL reads as (sealed and JSON columns)
    exported: bool = True      # part of the subject's DSR export
    merged: bool = False       # a sealed object whose keys join the exported row
    why: str | None = None     # the reason, for OTHER columns and columns left out of the export

    def __post_init__(self) -> None:
        if (self.kind is Kind.OTHER or not self.exported) and not self.why:
            raise RegistryError(f"column {self.name}: say why it is {self.kind.value}"
                                + ("" if self.exported else " and not exported"))


def clear(name: str, **options: Any) -> Column:
    return Column(name, Kind.CLEAR, **options)


def sealed(name: str, null_as: Any = None, **options: Any) -> Column:
    return Column(name, Kind.SEALED, null_as, **options)


def json_text(name: str, null_as: Any = None, **options: Any) -> Column:
    return Column(name, Kind.JSON, null_as, **options)


def key(name: str, **options: Any) -> Column:
    return Column(name, Kind.KEY, **options)


def timestamp(name: str, **options: Any) -> Column:
    return Column(name, Kind.TIMESTAMP, **options)


def subject_hash(name: str, **options: Any) -> Column:
    return Column(name, Kind.SUBJECT_HASH, exported=False, why="the keyed hash of the subject's "
                  "user id: it is the subject the export is for", **options)


def other(name: str, why: str, **options: Any) -> Column:
    return Column(name, Kind.OTHER, why=why, **options)


@dataclass(frozen=True)
class SubjectVia:
    """A table whose rows reach their subject through a parent row: ``key`` in both tables,
    the subject hash in the parent (in its ``subject_hash_column``)."""

    parent: str
    key: str


@dataclass(frozen=True)
class Retention:
    """When a row expires: ``column`` (a timestamp) is older than the window named ``window``
    (days, handed to retention as plain numbers), or, without a window, ``column`` is the
    row's own expiry time. ``ends_subject``: purging such a row ends its subject (their key
    and every other row go too)."""

    column: str
    window: str | None = None
    ends_subject: bool = False

    @property
    def bound(self) -> str:
        """The bind parameter the column is compared with."""
        return f":{self.window}_cutoff" if self.window else ":now"


# How ``decode`` treats a column's stored value: as it is (0), opened, or parsed.
_OPEN, _PARSE = 1, 2
_DECODE = {Kind.SEALED: _OPEN, Kind.JSON: _PARSE}


def subject_params(subject_hashes: Sequence[str]) -> dict[str, str]:
    """The bind parameters of ``PersonalTable.subjects_where(len(subject_hashes))``."""
    return {f"subject_{i}": h for i, h in enumerate(subject_hashes)}


def _values_of(names: tuple[str, ...]) -> Any:
    """A function taking ``names``' values from a row as a tuple (``itemgetter``: in C)."""
    take = operator.itemgetter(*names)
    return take if len(names) > 1 else lambda row: (take(row),)


def _fresh(value: Any) -> Any:
    """A copy of a mutable ``null_as`` (callers may change what they are handed)."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass(frozen=True, eq=False)
class PersonalTable:
    """One table holding personal data (see the module docstring)."""

    database: str
    name: str
    columns: tuple[Column, ...]
    row_id: tuple[str, ...]          # columns joined by "/": the row id in each ciphertext's AAD
    subject_hash_column: str         # where the subject hash is: here, or in the ``via`` parent
    via: SubjectVia | None = None
    export_as: str | None = None     # section of the DSR export (None: not exported)
    pk: str = "id"                   # the integer key purges batch and exports order by
    order_by: str | None = None      # export order (default: pk)
    retention: Retention | None = None
    created: str | None = None       # when a row was stored: a tombstone of a subject who came
                                     # back erases only older rows (tables without it go by
                                     # cascade from their parent)
    erase: bool = True               # False: kept on erasure, see kept_reason
    kept_reason: str | None = None
    _by_name: Mapping[str, Column] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.columns}
        if len(by_name) != len(self.columns):
            raise RegistryError(f"{self.name}: a column is described twice")
        object.__setattr__(self, "_by_name", by_name)
        if not self.erase and not self.kept_reason:
            raise RegistryError(f"{self.name}: a table kept on erasure must say why (kept_reason)")
        named = [*self.row_id, self.pk, self.created, self.order_by,
                 self.retention.column if self.retention else None,
                 self.via.key if self.via else self.subject_hash_column]
        unknown = sorted({n for n in named if n is not None} - set(by_name))
        if unknown:
            raise RegistryError(f"{self.name}: {', '.join(unknown)} not among its columns")

    # -- the declaration ------------------------------------------------------------------

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @functools.cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @functools.cached_property
    def sealed_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.kind is Kind.SEALED)

    # -- row ids and subjects -------------------------------------------------------------

    def row_id_of(self, row: Mapping[str, Any] | Any) -> str:
        """The row id of a stored row (or a dict of its values), as bound into ciphertexts."""
        if len(self.row_id) == 1:
            return row[self.row_id[0]]
        return "/".join(str(row[c]) for c in self.row_id)

    @functools.cached_property
    def row_id_sql(self) -> str:
        """The same row id as an SQL expression."""
        return " || '/' || ".join(self.row_id)

    @functools.cached_property
    def subject_sql(self) -> str:
        """SQL expression: the subject hash of a row of this table."""
        via = self.via
        if via is None:
            return f"{self.name}.{self.subject_hash_column}"
        return (f"(SELECT p.{self.subject_hash_column} FROM {via.parent} p "
                f"WHERE p.{via.key} = {self.name}.{via.key})")

    def subjects_where(self, count: int) -> str:
        """SQL condition selecting the rows of ``count`` subjects, bound as ``:subject_0``...
        (``subject_params``)."""
        cache_key = ("subjects", count)
        sql = self._cache.get(cache_key)
        if sql is None:
            hashes = ", ".join(f":subject_{i}" for i in range(count))
            via = self.via
            if via is None:
                sql = f"{self.subject_hash_column} IN ({hashes})"
            else:
                sql = (f"{via.key} IN (SELECT {via.key} FROM {via.parent} "
                       f"WHERE {self.subject_hash_column} IN ({hashes}))")
            self._cache[cache_key] = sql
        return sql

    # -- retention ------------------------------------------------------------------------

    def expired_where(self) -> str:
        """SQL condition: the row has expired (parameters ``:now`` and ``:<window>_cutoff``)."""
        assert self.retention is not None
        return f"{self.retention.column} <= {self.retention.bound}"

    def live_where(self, alias: str | None = None) -> str:
        """SQL condition: the row has not expired (the one rule the owner's reads filter on)."""
        if self.retention is None:
            return "1 = 1"
        prefix = f"{alias}." if alias else ""
        return f"{prefix}{self.retention.column} > {self.retention.bound}"

    # -- statements -----------------------------------------------------------------------

    def select_list(self, alias: str | None = None) -> str:
        """Every described column, for a SELECT (``alias.column`` with an alias)."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + c for c in self.column_names)

    # Statements are built once per column set and kept: the hot paths only look them up.

    def insert_sql(self, columns: tuple[str, ...]) -> str:
        sql = self._cache.get(("insert", columns))
        if sql is None:
            self._check(columns)
            sql = self._cache[("insert", columns)] = \
                f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        return sql

    def update_sql(self, columns: tuple[str, ...], where: str, bump: str | None = None) -> str:
        """``UPDATE ... SET column = ?, ... [, bump = bump + 1] WHERE where = ?``."""
        cache_key = ("update", columns, where, bump)
        sql = self._cache.get(cache_key)
        if sql is None:
            self._check((*columns, where) + ((bump,) if bump else ()))
            sets = [f"{c} = ?" for c in columns] + ([f"{bump} = {bump} + 1"] if bump else [])
            sql = self._cache[cache_key] = \
                f"UPDATE {self.name} SET {', '.join(sets)} WHERE {where} = ?"
        return sql

    def upsert_sql(self, columns: tuple[str, ...], conflict: tuple[str, ...]) -> str:
        """Insert, or on a ``conflict`` key update every other given column."""
        cache_key = ("upsert", columns, conflict)
        sql = self._cache.get(cache_key)
        if sql is None:
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in conflict)
            sql = self._cache[cache_key] = (f"{self.insert_sql(columns)} ON CONFLICT "
                                                 f"({', '.join(conflict)}) DO UPDATE SET {updates}")
        return sql

    def _check(self, columns: Sequence[str]) -> None:
        unknown = [c for c in columns if c not in self._by_name]
        if unknown:
            raise RegistryError(f"{self.name}: {', '.join(unknown)} not among its columns")

    # -- values ---------------------------------------------------------------------------

    def null_as(self, column: str) -> Any:
        """What a NULL in ``column`` reads as (a fresh copy)."""
        return _fresh(self._by_name[column].null_as)

    def seal(self, writer: Any, row_id: str, column: str, value: Any) -> bytes | None:
        """The stored form of one sealed column's value (NULL for None)."""
        return None if value is None else writer.seal(self.name, column, row_id, value)

    def decode(self, row: Mapping[str, Any] | Any, reader: Any,
               columns: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Column values of a stored row: sealed ones opened with ``reader`` (a ``FieldReader``;
        two or more in one ``open_batch``), JSON parsed, NULL read as each column's ``null_as``;
        every described column, or ``columns``.

        On every read's path: planned once per column tuple, every value taken from the row in
        one call (in order), only the columns that decode then looked at one by one."""
        names, take, decoded = self._split_plan(columns)
        out = dict(zip(names, take(row)))
        table, row_id = self.name, self.row_id_of(row)
        sealed: list[tuple[str, str, str, bytes]] = []
        for name, how, null_as in decoded:
            value = out[name]
            if value is None:
                out[name] = _fresh(null_as)
            elif how == _OPEN:
                sealed.append((table, name, row_id, value))
            else:
                out[name] = json.loads(value)
        if len(sealed) == 1:
            out[sealed[0][1]] = reader.open(*sealed[0])
        elif sealed:  # a profile has five: opened in one call, parsed as one JSON text
            out.update(zip((item[1] for item in sealed), reader.open_batch(sealed)))
        return out

    def _split_plan(self, columns: tuple[str, ...] | None) -> tuple[tuple[str, ...], Any, tuple]:
        """``decode``'s plan: the column names, a function taking their values from a row as a
        tuple, and the ``_decode_plan`` entries of those that decode (sealed, JSON)."""
        plan = self._cache.get(("decode_split", columns))
        if plan is None:
            full = self._decode_plan(columns)
            names = tuple(name for name, _, _ in full)
            plan = self._cache[("decode_split", columns)] = (names, _values_of(names),
                                                             tuple(e for e in full if e[1]))
        return plan

    def decode_many(self, rows: Sequence[Any], reader: Any,
                    columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """``decode`` of each row, the sealed values of them all opened in one call (see
        ``_decode_rows``; rebuilding a skill opens its every row)."""
        plan = self._cache.get(("decode_many", columns))
        if plan is None:
            plan = self._cache[("decode_many", columns)] = tuple(
                (name, name, how, null_as, False) for name, how, null_as in self._decode_plan(columns))
        return self._decode_rows(rows, reader, plan)

    def _decode_plan(self, columns: tuple[str, ...] | None) -> tuple[tuple[str, int, Any], ...]:
        """Per column of ``columns`` (default: all): its name, how it decodes, what NULL reads as."""
        plan = self._cache.get(("decode", columns))
        if plan is None:
            plan = self._cache[("decode", columns)] = tuple(
                (name, _DECODE.get(self._by_name[name].kind, 0), self._by_name[name].null_as)
                for name in (columns or self.column_names))
        return plan

    @functools.cached_property
    def _export_plan(self) -> tuple[tuple[int, str, int, Any, bool], ...]:
        """Per exported column: its position in ``select_list()``, its name, how it decodes,
        what NULL reads as, and whether it is merged."""
        return tuple((position, c.name, _DECODE.get(c.kind, 0), c.null_as, c.merged)
                     for position, c in enumerate(self.columns) if c.exported)

    def export_row(self, row: Any, reader: Any) -> dict[str, Any]:
        """One row in its DSR export form (see ``export_rows``)."""
        return self.export_rows([row], reader)[0]

    def export_rows(self, rows: Sequence[Any], reader: Any) -> list[dict[str, Any]]:
        """Rows selected with ``select_list()``, in their DSR export form: exported columns
        decoded, merged objects joined in.

        An export's time is mostly here: the sealed values of the whole batch are opened in one
        call (``reader.open_batch``: one parse for all of them), and columns are read by
        position."""
        return self._decode_rows(rows, reader, self._export_plan)

    def _decode_rows(self, rows: Sequence[Any], reader: Any,
                     plan: tuple[tuple[Any, str, int, Any, bool], ...]) -> list[dict[str, Any]]:
        """Rows decoded by ``plan`` (per column: where a row holds it, its name, how it decodes,
        what NULL reads as, whether it is merged into the row's object), the sealed values of
        them all opened in one ``reader.open_batch`` call: one parse for all of them."""
        table = self.name
        sealed = [(at, name) for at, name, how, _, _ in plan if how == _OPEN]
        items: list[tuple[str, str, str, bytes]] = []
        for row in rows:
            row_id = self.row_id_of(row)
            items.extend((table, name, row_id, row[at]) for at, name in sealed if row[at] is not None)
        opened = iter(reader.open_batch(items) if items else ())
        out: list[dict[str, Any]] = []
        for row in rows:
            item: dict[str, Any] = {}
            for at, name, how, null_as, merged in plan:
                value = row[at]
                if how:
                    if value is None:
                        value = _fresh(null_as)
                    elif how == _OPEN:
                        value = next(opened)
                    else:
                        value = json.loads(value)
                if merged:
                    item.update(value or {})
                else:
                    item[name] = value
            out.append(item)
        return out
