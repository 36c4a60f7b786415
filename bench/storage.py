"""Storage-core benchmark: what SQLCipher costs next to plain SQLite, with the service's pragmas.

Run from the repository root::

    .venv/bin/python bench/storage.py [--quick]

Both sides go through ``twin.storage.Database`` (plain SQLite = ``key=None``: the same SQLite
build with encryption off, so the ratios are the cost of encryption alone), so WAL,
``synchronous=NORMAL``, ``secure_delete`` and the cache settings apply to both. Opening a
connection is timed up to and including the first read, because SQLCipher derives the key
lazily on first page access. Prints one table with the targets beside the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlcipher3  # noqa: E402

from twin.storage import Database, EngineSettings  # noqa: E402

PAYLOAD_BYTES = 200          # a typical small row: ~25 MB for 100k rows
COLD_CACHE_KIB = 2 * 1024    # a page cache much smaller than the table: reads hit the file
SEED = 20240501


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does (``--quick`` shrinks it for a smoke run)."""

    raw_opens: int = 200
    passphrase_opens: int = 10
    batch_rows: int = 100_000
    batch_size: int = 10_000
    point_reads: int = 50_000
    single_writes: int = 5_000


@dataclass
class Row:
    label: str
    cipher: float
    plain: float | None
    unit: str
    target: str = ""
    passed: bool | None = None


# -- throughput, measured in alternating rounds ----------------------------------------------
# The two sides take turns round by round and each reports its median round: a noisy
# neighbour on the machine then slows both sides alike instead of skewing the ratio.

ROUNDS = 10


def _schema(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items "
                     "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB NOT NULL)")


def _alternate(rounds: int, work: Callable[[Database, int], int],
               dbs: dict[str, Database]) -> dict[str, float]:
    """Median operations/second per side; ``work(db, round)`` returns the operations it did."""
    rates: dict[str, list[float]] = {name: [] for name in dbs}
    for round_no in range(rounds):
        for name, db in dbs.items():
            start = time.perf_counter()
            done = work(db, round_no)
            rates[name].append(done / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def batched_inserts(dbs: dict[str, Database], scale: Scale) -> dict[str, float]:
    """Rows per second inserted in transactions of ``scale.batch_size`` rows."""
    payload = random.Random(SEED).randbytes(PAYLOAD_BYTES)
    for db in dbs.values():
        _schema(db)

    def insert_batch(db: Database, batch: int) -> int:
        first = batch * scale.batch_size
        rows = [(i, f"learner-{i}", payload) for i in range(first, first + scale.batch_size)]
        with db.transaction() as conn:
            conn.executemany("INSERT INTO items (id, name, payload) VALUES (?, ?, ?)", rows)
        return len(rows)

    return _alternate(scale.batch_rows // scale.batch_size, insert_batch, dbs)


def point_reads(dbs: dict[str, Database], scale: Scale) -> dict[str, float]:
    """Random primary-key lookups per second on one connection per side."""
    rng = random.Random(SEED)
    per_round = scale.point_reads // ROUNDS
    ids = [[rng.randrange(scale.batch_rows) for _ in range(per_round)] for _ in range(ROUNDS)]
    sql = "SELECT name, payload FROM items WHERE id = ?"

    def read(db: Database, round_no: int) -> int:
        conn = db.connection()
        for row_id in ids[round_no]:
            if conn.execute(sql, (row_id,)).fetchone() is None:
                raise RuntimeError(f"row {row_id} missing")
        return per_round

    for db in dbs.values():  # open the connections and warm the statement cache untimed
        read(db, 0)
    return _alternate(ROUNDS, read, dbs)


def single_row_writes(dbs: dict[str, Database], scale: Scale) -> dict[str, float]:
    """Committed one-row transactions per second (``db.write``, as the service does)."""
    payload = random.Random(SEED).randbytes(PAYLOAD_BYTES)
    per_round = scale.single_writes // ROUNDS

    def write(db: Database, round_no: int) -> int:
        first = scale.batch_rows + round_no * per_round
        for i in range(first, first + per_round):
            db.write(lambda conn, i=i: conn.execute(
                "INSERT INTO items (id, name, payload) VALUES (?, ?, ?)",
                (i, f"learner-{i}", payload)))
        return per_round

    return _alternate(ROUNDS, write, dbs)


def driver_baseline(scale: Scale) -> dict[str, float]:
    """In-memory point reads, no encryption at all: the sqlcipher3 build vs stdlib sqlite3.

    Database(key=None) runs on the same sqlcipher3 build without a key, so the other ratios
    measure encryption alone; this row shows how the build itself compares to stdlib sqlite3."""
    import sqlite3
    rows = 10_000
    conns = {}
    for name, module in (("cipher", sqlcipher3), ("plain", sqlite3)):
        conn = module.connect(":memory:")
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, payload BLOB)")
        conn.executemany("INSERT INTO items VALUES (?, ?)",
                         ((i, b"x" * PAYLOAD_BYTES) for i in range(rows)))
        conns[name] = conn
    per_round = scale.point_reads // ROUNDS

    def read(conn: Any, round_no: int) -> int:
        for i in range(per_round):
            conn.execute("SELECT payload FROM items WHERE id = ?", ((i * 7919) % rows,)).fetchone()
        return per_round

    try:
        return _alternate(ROUNDS, read, conns)  # type: ignore[arg-type]
    finally:
        for conn in conns.values():
            conn.close()


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def open_database_ms(path: Path, key: bytes | None, opens: int) -> float:
    """Median ms to open a ``Database`` connection (service pragmas) and read one row."""
    times = []
    for _ in range(opens):
        db = Database(path, key)
        start = time.perf_counter()
        db.connection().execute("SELECT name FROM items WHERE id = 1").fetchone()
        times.append(time.perf_counter() - start)
        db.close_all()
    return _median_ms(times)


def _open_bare(path: Path, key_pragma: str) -> Any:
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(key_pragma)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # key derivation happens here
    return conn


def open_bare_ms(path: Path, key_pragma: str, opens: int) -> float:
    """Median ms to connect, key and read the schema with no other pragmas."""
    times = []
    for _ in range(opens):
        start = time.perf_counter()
        conn = _open_bare(path, key_pragma)
        times.append(time.perf_counter() - start)
        conn.close()
    return _median_ms(times)


def _make_passphrase_db(path: Path, passphrase: str) -> None:
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = '{passphrase}'")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO items VALUES (1, 'x')")
    conn.close()


# -- the run --------------------------------------------------------------------------------

def _ratio_row(label: str, cipher: float, plain: float, unit: str, minimum: float | None) -> Row:
    ratio = cipher / plain
    target = f">= {minimum:.1f}x plain" if minimum is not None else "(no target)"
    return Row(label, cipher, plain, unit, target, None if minimum is None else ratio >= minimum)


def run(scale: Scale, workdir: Path) -> list[Row]:
    key = os.urandom(32)
    keys = {"cipher": key, "plain": None}
    dbs = {name: Database(workdir / f"{name}.db", k) for name, k in keys.items()}
    rows: list[Row] = []
    try:
        rate = batched_inserts(dbs, scale)
        rows.append(_ratio_row(f"batched inserts ({scale.batch_rows // 1000}k rows, "
                               f"{scale.batch_size // 1000}k/txn)", rate["cipher"], rate["plain"],
                               "rows/s", 0.5))
        rate = point_reads(dbs, scale)
        rows.append(_ratio_row("point reads, hot cache (32 MiB)", rate["cipher"], rate["plain"],
                               "reads/s", 0.5))
        cold = EngineSettings(cache_size_kib=COLD_CACHE_KIB)
        cold_dbs = {name: Database(db.path, keys[name], settings=cold) for name, db in dbs.items()}
        try:
            rate = point_reads(cold_dbs, scale)
        finally:
            for db in cold_dbs.values():
                db.close_all()
        rows.append(_ratio_row(f"point reads, {COLD_CACHE_KIB // 1024} MiB cache (page misses)",
                               rate["cipher"], rate["plain"], "reads/s", None))
        rate = single_row_writes(dbs, scale)
        rows.append(_ratio_row("committed single-row writes", rate["cipher"], rate["plain"],
                               "txn/s", None))
        rate = driver_baseline(scale)
        rows.append(_ratio_row("driver only: in-memory point reads, no encryption",
                               rate["cipher"], rate["plain"], "reads/s", None))
    finally:
        for db in dbs.values():
            db.close_all()
    cipher_db, plain_db = dbs["cipher"], dbs["plain"]

    raw_pragma = f"PRAGMA key = \"x'{key.hex()}'\""
    bare_raw = open_bare_ms(cipher_db.path, raw_pragma, scale.raw_opens)
    rows.append(Row("open + first read, raw key (bare)", bare_raw, None, "ms", "< 5 ms",
                    bare_raw < 5))
    service_raw = open_database_ms(cipher_db.path, key, scale.raw_opens)
    service_plain = open_database_ms(plain_db.path, None, scale.raw_opens)
    rows.append(Row("open + first read, raw key (Database)", service_raw, service_plain, "ms",
                    "< 5 ms", service_raw < 5))
    passphrase_path = workdir / "passphrase.db"
    _make_passphrase_db(passphrase_path, "correct horse battery staple")
    passphrase = open_bare_ms(passphrase_path, "PRAGMA key = 'correct horse battery staple'",
                              scale.passphrase_opens)
    rows.append(Row(f"open + first read, passphrase (PBKDF2 256k, n={scale.passphrase_opens})",
                    passphrase, None, "ms", "(reference)", None))
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if unit == "ms" else f"{value:,.0f}"


def render(rows: list[Row]) -> str:
    """The results as a fixed-width text table."""
    header = (f"{'measurement':<52} {'SQLCipher':>12} {'plain':>12} {'ratio':>6}  "
              f"{'unit':<7} {'target':<15} ok")
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row.cipher / row.plain:.2f}" if row.plain and row.unit != "ms" else "-"
        ok = {True: "yes", False: "NO", None: ""}[row.passed]
        lines.append(f"{row.label:<52} {_fmt(row.cipher, row.unit):>12} "
                     f"{_fmt(row.plain, row.unit):>12} {ratio:>6}  "
                     f"{row.unit:<7} {row.target:<15} {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the work (smoke run)")
    args = parser.parse_args(argv)
    scale = Scale()
    if args.quick:
        scale = Scale(raw_opens=20, passphrase_opens=2, batch_rows=10_000, batch_size=1_000,
                      point_reads=5_000, single_writes=500)
    started = time.perf_counter()
    cipher_version = sqlcipher3.connect(":memory:").execute("PRAGMA cipher_version").fetchone()[0]
    print(f"SQLCipher {cipher_version}, SQLite {sqlcipher3.sqlite_version}; "
          f"{os.cpu_count()} CPUs; {PAYLOAD_BYTES}-byte rows")
    with tempfile.TemporaryDirectory(prefix="twin-bench-") as workdir:
        rows = run(scale, Path(workdir))
    print(render(rows))
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
