"""SQLCipher's page settings of a file: what new files get, what older files have, and
telling them apart when a file is opened.

SQLCipher records neither a file's page size nor its HMAC algorithm in the file (the header is
encrypted with the rest): every connection must name them, and a file opens only under its
own. New files get ``CURRENT``, chosen by measurement (``bench/sqlcipher_settings.py`` and
``bench/request_cpu.py``, figures in the README): 4 KiB pages authenticated with HMAC-SHA256
(which this CPU computes in hardware). A one-row commit (a profile create, a session start)
encrypts and authenticates each page it dirtied whole, and it dirties a leaf of each b-tree
the row enters however large the pages are: 4 KiB pages take a third off those bytes. 8 KiB
pages (new files after b8c13d3, up to 46d17c1: ``PAGES_8K``) cost an erasure's and a purge's
large deletes some 10-17% less CPU (fewer pages, each with its fixed cost); the one-row commits
are every request's, the large deletes a rare job's (measured under 4 KiB pages on 2026-12-03:
a purge meets its >= 50k rows/s, the erase of 100k sessions misses its < 1 s at 1.5 s, as
release b8c13d3 did in the same run, 0.97x of it). Files of release b8c13d3 and before have
SQLCipher 4's defaults, ``LEGACY``. Both keep opening under their settings, and ``twin db
recipher`` rewrites either into ``CURRENT`` (``twin.storage.recipher``).

``cipher_kdf_algorithm`` is not a setting here: files are keyed with a raw 256-bit key
(``PRAGMA key = "x'..'"``), which SQLCipher uses as is, so no key derivation ever runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

@dataclass(frozen=True)
class CipherSettings:
    page_size: int
    hmac: str

    def apply(self, conn: Any, schema: str = "main") -> None:
        """Name these settings on a keyed connection (after ``PRAGMA key``, before any read),
        for its ``schema`` (an attached database: its name). The HMAC first: the page size
        pragma hands SQLite the reserve of the HMAC then set, and a new file's header
        records it."""
        conn.execute(f"PRAGMA {schema}.cipher_hmac_algorithm = {self.hmac}")
        conn.execute(f"PRAGMA {schema}.cipher_page_size = {int(self.page_size)}")

    def __str__(self) -> str:
        return f"{self.page_size}-byte pages, {self.hmac}"


CURRENT = CipherSettings(4096, "HMAC_SHA256")
PAGES_8K = CipherSettings(8192, "HMAC_SHA256")  # new files after b8c13d3, up to 46d17c1
LEGACY = CipherSettings(4096, "HMAC_SHA512")  # SQLCipher 4's defaults: release b8c13d3 and before
KNOWN = (CURRENT, PAGES_8K, LEGACY)


def candidates(path: Path) -> list[CipherSettings]:
    """The known settings to try on an existing file, likeliest first: a file is whole pages,
    so settings whose page size does not divide its size go last (an 8 KiB one when the size
    is an odd number of 4 KiB pages); among the rest, ``KNOWN``'s order (new files first)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return list(KNOWN)
    return sorted(KNOWN, key=lambda c: size % c.page_size != 0)


def of_connection(conn: Any) -> CipherSettings:
    """The settings a keyed connection reads its file with."""
    page = int(conn.execute("PRAGMA cipher_page_size").fetchone()[0])
    hmac = str(conn.execute("PRAGMA cipher_hmac_algorithm").fetchone()[0])
    return CipherSettings(page, hmac)
