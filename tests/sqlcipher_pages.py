"""Every page of a SQLCipher file, decrypted: for tests that look for bytes a database must no
longer hold anywhere, free pages and freed cells included (not only in the rows SQL sees).

SQLCipher 4 with a raw key (how ``twin.storage.engine`` keys files) encrypts each page with
AES-256-CBC under that key; the last 80 bytes of a page are its IV (16) and HMAC (64), and page
1 starts with the file's 16-byte salt. We only decrypt (the library's AES, no MAC check):
a test that finds a known marker in the output knows it decrypted, so an absence means
something.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAGE_SIZE = 4096
RESERVE = 80  # IV (16) + HMAC-SHA512 (64)
SALT = 16


def decrypted_pages(path: Path, key: bytes) -> list[bytes]:
    """The plaintext of every page of the SQLCipher file at ``path`` (no WAL: checkpoint first)."""
    data = Path(path).read_bytes()
    assert len(data) % PAGE_SIZE == 0, f"{path}: not whole {PAGE_SIZE}-byte pages"
    pages = []
    for number in range(len(data) // PAGE_SIZE):
        page = data[number * PAGE_SIZE:(number + 1) * PAGE_SIZE]
        start = SALT if number == 0 else 0
        iv = page[PAGE_SIZE - RESERVE:PAGE_SIZE - RESERVE + 16]
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        pages.append(decryptor.update(page[start:PAGE_SIZE - RESERVE]) + decryptor.finalize())
    return pages


def file_holds(path: Path, key: bytes, needle: bytes) -> bool:
    """Whether ``needle`` appears in any decrypted page of the file (in a live row or not)."""
    return any(needle in page for page in decrypted_pages(path, key))
