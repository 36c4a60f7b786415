"""SQLCipher's page settings of a file: what new files get, what older files have, and
telling them apart when a file is opened.

SQLCipher records neither a file's page size nor its HMAC algorithm in the file (the header is
encrypted with the rest): every connection must name them, and a file opens only under its
own. New files get ``CURRENT``, chosen by measurement (``bench/sqlcipher_settings.py``, figures
in the README): 8 KiB pages authenticated with HMAC-SHA256 (which this CPU computes in
hardware) take about a quarter off the large deletes of an erasure or a purge against
SQLCipher 4's defaults, for about 8% more per one-row commit; 16 KiB pages took a little more
off the deletes but made every one-row commit (a profile create) some 60% dearer, since each
dirty page is encrypted and authenticated whole. Files written before (release b8c13d3 and earlier) have those defaults,
``LEGACY``; they keep opening under them, and ``twin db recipher`` rewrites one into
``CURRENT`` (``twin.storage.recipher``).

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


CURRENT = CipherSettings(8192, "HMAC_SHA256")
LEGACY = CipherSettings(4096, "HMAC_SHA512")  # SQLCipher 4's defaults: every file before CURRENT
KNOWN = (CURRENT, LEGACY)


def candidates(path: Path) -> list[CipherSettings]:
    """The known settings to try on an existing file, likeliest first: a file is whole pages,
    so settings whose page size does not divide its size go last (a legacy file then costs no
    failed attempt three times in four)."""
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
