"""The storage core on its two backends, side by side: SQLCipher file vs PostgreSQL.

Run from the repository root (PostgreSQL on 127.0.0.1:5432 as ``postgres``, or ``--admin-url``;
the benchmark creates its own database and drops it)::

    .venv/bin/python bench/backends.py [--quick]

Both sides go through the same ``Backend`` API with the same SQL, so the PostgreSQL column
shows what the server round trips, placeholder translation and row objects cost next to the
embedded default, measured in the same run. Each operation also prints the statements,
transactions and round trips the driver counted per operation.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twin.storage import Counts, Database, PostgresSettings, open_postgresql  # noqa: E402

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ROWS = 10_000


def _schema(db: Any) -> None:
    d = db.dialect
    id_column = "INTEGER PRIMARY KEY" if d.name == "sqlite" else d.identity
    with db.transaction() as conn:
        conn.execute(f"CREATE TABLE items (id {id_column}, name TEXT NOT NULL, body {d.bytes})")
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, note TEXT NOT NULL)")
    db.executemany("INSERT INTO items (name, body) VALUES (?, ?)",
                   ((f"item-{i}", os.urandom(200)) for i in range(ROWS)))


def _measure(db: Any, op: Callable[[int], Any], count: int, threads: int = 1) -> tuple[float, float, Counts]:
    """(operations/s, p50 ms, counts per operation) of ``count`` calls over ``threads``."""
    latencies: list[float] = []
    lock = threading.Lock()
    before = db.statement_counts()

    def run(offset: int) -> None:
        mine = []
        for i in range(offset, count, threads):
            started = time.perf_counter()
            op(i)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    spent = db.statement_counts() - before
    per_op = Counts(round(spent.statements / count, 2), round(spent.transactions / count, 2),
                    round(spent.round_trips / count, 2))
    return count / elapsed, statistics.median(latencies) * 1000, per_op


def _operations(db: Any, run_id: str) -> dict[str, tuple[Callable[[int], Any], int]]:
    def point_read(i: int) -> Any:
        return db.query_one("SELECT name, body FROM items WHERE id = ?", (i % ROWS + 1,))

    def autocommit_write(i: int) -> Any:
        return db.execute("INSERT INTO events (seq, note) VALUES (?, ?)", (i + 1, run_id))

    def transaction_of_three(i: int) -> Any:
        def fn(conn: Any) -> None:
            conn.execute("SELECT name FROM items WHERE id = ?", (i % ROWS + 1,))
            conn.execute("UPDATE items SET name = ? WHERE id = ?", (f"renamed-{i}", i % ROWS + 1))
            conn.execute("INSERT INTO events (seq, note) VALUES (?, ?)", (1_000_000 + i, run_id))
        return db.write(fn)

    def group_commit(i: int) -> Any:
        return db.write_shared(lambda conn: conn.execute(
            "INSERT INTO events (seq, note) VALUES (?, ?)", (2_000_000 + i, run_id)))

    return {"point read by primary key": (point_read, 1),
            "one-statement write (autocommit)": (autocommit_write, 1),
            "write(fn): read, update, insert": (transaction_of_three, 1),
            "write_shared, 8 threads": (group_commit, 8)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the work (smoke run)")
    parser.add_argument("--admin-url", default=ADMIN_URL,
                        help="a PostgreSQL account that may create databases (default: %(default)s)")
    args = parser.parse_args(argv)
    count = 500 if args.quick else 5000

    import psycopg

    name = f"twin_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = args.admin_url.rsplit("/", 1)[0]
    results: dict[str, dict[str, tuple[float, float, Counts]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"sqlcipher": Database(Path(tmp) / "bench.db", os.urandom(32), name="bench"),
                    "postgresql": open_postgresql(PostgresSettings(f"{base}/{name}", pool_size=8), name="bench")}
        try:
            for label, db in backends.items():
                db.enable_statement_counting()
                _schema(db)
                for op_name, (op, threads) in _operations(db, label).items():
                    results.setdefault(op_name, {})[label] = _measure(db, op, count, threads)
        finally:
            for db in backends.values():
                db.close_all()
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{'operation':36} {'SQLCipher ops/s':>16} {'PostgreSQL ops/s':>17} {'ratio':>6} "
          f"{'p50 ms (S / P)':>15}  per op on PostgreSQL (statements, transactions, round trips)")
    for op_name, by_backend in results.items():
        (s_ops, s_p50, _), (p_ops, p_p50, p_counts) = by_backend["sqlcipher"], by_backend["postgresql"]
        print(f"{op_name:36} {s_ops:16,.0f} {p_ops:17,.0f} {p_ops / s_ops:5.2f}x "
              f"{s_p50:7.3f} / {p_p50:<6.3f}  {p_counts.statements:g}, {p_counts.transactions:g}, "
              f"{p_counts.round_trips:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
