"""SQLCipher settings for new databases, measured (issue 14 item 6): ``cipher_page_size`` and
``cipher_hmac_algorithm`` on the three write patterns the compliance work stresses, next to
SQLCipher's default (4096-byte pages, HMAC-SHA512; ours up to release b8c13d3) and to the same
SQLite build without encryption, in interleaved rounds (min/median/max rows/s of the process's
CPU time, ``time.process_time``, so a loaded machine slows the figures less than wall time
would; ratios of medians to that default). New files get ``twin.storage.cipher.CURRENT``,
chosen here.

- insert: session-shaped rows (three 60-byte sealed values, four indexes), 5,000 per commit;
- commit: one such row per commit (what a profile create or a session start commits), 1,000
  commits, the cost larger pages add (each dirty page is encrypted and authenticated whole);
- erase: one subject's half of the rows in one statement (a DSR erasure);
- purge: every row in batches of 2,000 chosen through the time index (a retention purge).

Every connection gets the engine's pragmas (WAL, synchronous=NORMAL, secure_delete, incremental
auto-vacuum, a 32 MiB cache). ``cipher_kdf_algorithm`` is not measured: the engine keys files
with a raw 256-bit key (``PRAGMA key = "x'..'"``), which SQLCipher uses as is, so no key
derivation runs and the KDF setting changes nothing.

    .venv/bin/python bench/sqlcipher_settings.py [--rows 100000] [--rounds 3]
    .venv/bin/python bench/sqlcipher_settings.py --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import sqlcipher3

from twin.storage.cipher import CURRENT, LEGACY, CipherSettings

KEY = os.urandom(32)
SCHEMA = """CREATE TABLE s (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT UNIQUE NOT NULL, profile_id TEXT NOT NULL,
 kind BLOB, start_time TEXT, topics BLOB, metrics BLOB, score REAL);
CREATE INDEX s_profile ON s (profile_id, id); CREATE INDEX s_start ON s (start_time);"""
def connect(path, page, hmac):
    c = sqlcipher3.connect(path, isolation_level=None)
    if page is not None:
        c.execute(f"PRAGMA key = \"x'{KEY.hex()}'\"")
        CipherSettings(page, hmac).apply(c)
    for p in ("auto_vacuum = INCREMENTAL", "journal_mode = WAL", "synchronous = NORMAL", "secure_delete = ON",
              "temp_store = MEMORY", "cache_size = -32768", "foreign_keys = ON"):
        c.execute("PRAGMA " + p)
    return c
blob = os.urandom(60)
def run(page, hmac, N):
    d = tempfile.mkdtemp(prefix="twin-bench-cipher-"); path = os.path.join(d, "t.db")
    c = connect(path, page, hmac); c.executescript(SCHEMA)
    rows = [(f"ses_{i % 100}_{i}", f"prf_{i % 100 if i < N // 2 else 'big'}", blob, "2020-01-01", blob, blob, 0.5) for i in range(N)]
    t = time.process_time()
    for i in range(0, N, 5000):
        c.execute("BEGIN IMMEDIATE"); c.executemany("INSERT INTO s (session_id, profile_id, kind, start_time, topics, metrics, score) VALUES (?,?,?,?,?,?,?)", rows[i:i+5000]); c.execute("COMMIT")
    ins = N / (time.process_time() - t)
    t = time.process_time()
    for i in range(1000):
        c.execute("BEGIN IMMEDIATE"); c.execute("INSERT INTO s (session_id, profile_id, kind, start_time, topics, metrics, score) VALUES (?,?,?,?,?,?,?)", (f"one_{i}", "prf_one", blob, "2030-01-01", blob, blob, 0.5)); c.execute("COMMIT")
    single = 1000 / (time.process_time() - t)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    t = time.process_time()  # erase pattern: one subject's half of the rows in one statement
    c.execute("BEGIN IMMEDIATE"); k = c.execute("DELETE FROM s WHERE profile_id = 'prf_big'").rowcount; c.execute("COMMIT")
    erase = k / (time.process_time() - t)
    t = time.process_time(); n = 0  # purge pattern: batches of 2000 by the time index
    while True:
        c.execute("BEGIN IMMEDIATE"); k = c.execute("DELETE FROM s WHERE id IN (SELECT id FROM s WHERE start_time <= '2021' LIMIT 2000)").rowcount; c.execute("COMMIT")
        n += k
        if not k: break
    purge = n / (time.process_time() - t)
    c.close()
    shutil.rmtree(d)
    return ins, single, erase, purge
_TRIED = [LEGACY, CipherSettings(4096, "HMAC_SHA256"), CipherSettings(8192, "HMAC_SHA512"),
          CipherSettings(8192, "HMAC_SHA256"), CipherSettings(16384, "HMAC_SHA512"),
          CipherSettings(16384, "HMAC_SHA256")]
CONFIGS = [("plain (no encryption)", None, None)] + [
    (f"{c.page_size} / {c.hmac}" + (" (legacy)" if c == LEGACY else " (new files)" if c == CURRENT else ""),
     c.page_size, c.hmac) for c in _TRIED]
DEFAULT = CONFIGS[1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description="SQLCipher page size and HMAC, measured")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5,000 rows, one round")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds = 5_000, 1
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name, _, _ in CONFIGS}
    for _ in range(args.rounds):
        for name, page, hmac in CONFIGS:
            results[name].append(run(page, hmac, args.rows))
    print(f"{args.rows:,} rows, {args.rounds} interleaved rounds: rows/s min/median/max (median / {DEFAULT})")
    base = [statistics.median(r[i] for r in results[DEFAULT]) for i in range(4)]
    for name, rounds in results.items():
        cells = []
        for i, label in enumerate(("insert", "commit", "erase", "purge")):
            values = sorted(r[i] for r in rounds)
            median = statistics.median(values)
            cells.append(f"{label} {values[0]:,.0f}/{median:,.0f}/{values[-1]:,.0f} ({median / base[i]:.2f})")
        print(f"  {name:<26} " + "   ".join(cells))


if __name__ == "__main__":
    main()
