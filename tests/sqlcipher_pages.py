"""Every page of a SQLCipher file and of its WAL, decrypted: for tests that look for bytes a
database must no longer hold anywhere, free pages, freed cells and stale WAL frames included
(not only in the rows SQL sees).

SQLCipher 4 with a raw key: AES-256-CBC, and reserved bytes at each page's end (a 16-byte IV,
then the HMAC: 48 bytes with HMAC-SHA256, 80 with HMAC-SHA512). Page 1 starts with the salt.
The page size and the reserve are read from the file itself (``page_layout``): SQLCipher does
not store them in the clear, so each known layout is tried on page 1 until its decrypted
header names that very page size and reserve. We only decrypt (the library's AES, no MAC
check): a test that finds a known marker in the output knows it decrypted, so an absence
means something.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_PAGE_SIZES = tuple(2 ** n for n in range(9, 17))  # 512 .. 65536, every size SQLite allows
_RESERVES = (48, 80)  # IV + HMAC-SHA256 / HMAC-SHA1 (rounded to AES blocks), IV + HMAC-SHA512
_SALT = 16
_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24


def _decrypt_page(key: bytes, page: bytes, first: bool, reserve: int) -> bytes:
    size = len(page)
    start = _SALT if first else 0
    iv = page[size - reserve:size - reserve + 16]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(page[start:size - reserve]) + decryptor.finalize()


def page_layout(data: bytes, key: bytes) -> tuple[int, int]:
    """``(page size, reserved bytes)`` of a SQLCipher file whose first bytes are ``data``.

    Page 1 decrypted from byte 16 on is the SQLite header from its offset 16: the page size
    (2 bytes, big-endian, 1 meaning 65536), then at offset 21-23 the fixed payload fractions
    (64, 32, 32). Only the right IV position (page end minus SQLCipher's reserve) decrypts that
    first block. (The header's own reserve byte, offset 20, can be larger than SQLCipher's: the
    key pragma reserves for its default HMAC before the HMAC setting, and SQLite never shrinks
    a reserve.)
    """
    for size in _PAGE_SIZES:
        for reserve in _RESERVES:
            if len(data) < size:
                continue
            header = _decrypt_page(key, data[:size], True, reserve)
            named = int.from_bytes(header[0:2], "big")
            if (65536 if named == 1 else named) == size and header[5:8] == b"\x40\x20\x20":
                return size, reserve
    raise ValueError("not a SQLCipher file under this key (no known page layout decrypts its header)")


def decrypted_file_content(path: Path, key: bytes) -> bytes:
    """Every page of a SQLCipher file and of its WAL, decrypted: live rows, free pages and
    stale WAL frames alike. What someone holding the key could dig out of the files."""
    out = []
    data = path.read_bytes() if path.exists() else b""
    wal = Path(str(path) + "-wal")
    wal_data = wal.read_bytes() if wal.exists() else b""
    if not data:
        if wal_data:
            raise ValueError(f"{path}: a WAL without its database file")
        return b""
    page, reserve = page_layout(data, key)
    for offset in range(0, len(data) - page + 1, page):
        out.append(_decrypt_page(key, data[offset:offset + page], offset == 0, reserve))
    frame = _WAL_FRAME_HEADER + page
    for offset in range(_WAL_HEADER, len(wal_data) - frame + 1, frame):
        page_number = int.from_bytes(wal_data[offset:offset + 4], "big")
        out.append(_decrypt_page(key, wal_data[offset + _WAL_FRAME_HEADER:offset + frame], page_number == 1,
                                 reserve))
    return b"\x00".join(out)


def file_holds(path: Path, key: bytes, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in the decrypted file or its WAL."""
    return needle in decrypted_file_content(Path(path), key)


def wal_frame_pages(path: Path, key: bytes) -> list[int]:
    """The page number of every frame in a SQLCipher file's WAL, in order (frame headers are
    not encrypted; the page size is read from the file): which pages the commits since the
    last checkpoint wrote."""
    path = Path(path)
    page, _ = page_layout(path.read_bytes(), key)
    wal = Path(str(path) + "-wal")
    wal_data = wal.read_bytes() if wal.exists() else b""
    frame = _WAL_FRAME_HEADER + page
    return [int.from_bytes(wal_data[offset:offset + 4], "big")
            for offset in range(_WAL_HEADER, len(wal_data) - frame + 1, frame)]
