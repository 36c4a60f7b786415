"""Every page of a SQLCipher file and of its WAL, decrypted: for tests that look for bytes a
database must no longer hold anywhere, free pages, freed cells and stale WAL frames included
(not only in the rows SQL sees).

SQLCipher 4 defaults (the engine sets no cipher_* pragma, and keys files with a raw key):
4 KiB pages, AES-256-CBC, and 80 reserved bytes at each page's end (16-byte IV, then the HMAC).
Page 1 starts with the salt. We only decrypt (the library's AES, no MAC check): a test that
finds a known marker in the output knows it decrypted, so an absence means something.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_PAGE = 4096
_RESERVE = 80
_SALT = 16
_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24


def _decrypt_page(key: bytes, page: bytes, first: bool) -> bytes:
    start = _SALT if first else 0
    iv = page[_PAGE - _RESERVE:_PAGE - _RESERVE + 16]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(page[start:_PAGE - _RESERVE]) + decryptor.finalize()


def decrypted_file_content(path: Path, key: bytes) -> bytes:
    """Every page of a SQLCipher file and of its WAL, decrypted: live rows, free pages and
    stale WAL frames alike. What someone holding the key could dig out of the files."""
    out = []
    data = path.read_bytes() if path.exists() else b""
    for offset in range(0, len(data) - _PAGE + 1, _PAGE):
        out.append(_decrypt_page(key, data[offset:offset + _PAGE], offset == 0))
    wal = Path(str(path) + "-wal")
    data = wal.read_bytes() if wal.exists() else b""
    frame = _WAL_FRAME_HEADER + _PAGE
    for offset in range(_WAL_HEADER, len(data) - frame + 1, frame):
        page_number = int.from_bytes(data[offset:offset + 4], "big")
        out.append(_decrypt_page(key, data[offset + _WAL_FRAME_HEADER:offset + frame], page_number == 1))
    return b"\x00".join(out)


def file_holds(path: Path, key: bytes, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in the decrypted file or its WAL."""
    return needle in decrypted_file_content(Path(path), key)
