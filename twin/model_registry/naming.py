"""Model names, version strings, the auto-version rule, and safe file names.

Versions are compared in *natural* order: runs of digits compare as numbers, the rest as
text, so ``"1.10" > "1.9"`` and ``"10" > "9"``. When ``save_model`` gets no version, the
next one is the highest existing version with its last run of digits incremented
(``"1.0.0"`` -> ``"1.0.1"``, ``"7"`` -> ``"8"``, ``"2.0-rc9"`` -> ``"2.0-rc10"``, zero padding
kept: ``"009"`` -> ``"010"``); a version without digits gets ``".1"`` appended; the first
version of a name is ``"1"``.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any, Iterable

from .errors import InvalidModelNameError, InvalidVersionError

MAX_NAME_LENGTH = 128
MAX_VERSION_LENGTH = 64
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_DIGITS = re.compile(r"(\d+)")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*\.model")


def validate_name(name: Any) -> str:
    """A model name: 1..128 characters, no path separators, no ``..``, no control characters."""
    if not isinstance(name, str):
        raise InvalidModelNameError(f"model name must be a string, got {type(name).__name__}")
    if not name or name != name.strip():
        raise InvalidModelNameError("model name must not be empty or start/end with whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelNameError(f"model name must be at most {MAX_NAME_LENGTH} characters")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidModelNameError(f"model name {name!r} must not contain '/', '\\' or '..'")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise InvalidModelNameError("model name must not contain control characters")
    return name


def validate_version(version: Any) -> str:
    """A version string: letters, digits and ``._+-``, starting alphanumeric, no ``..``."""
    if not isinstance(version, str):
        raise InvalidVersionError(f"version must be a string, got {type(version).__name__}")
    if len(version) > MAX_VERSION_LENGTH or not _VERSION.fullmatch(version) or ".." in version:
        raise InvalidVersionError(
            f"version {version!r} must be 1..{MAX_VERSION_LENGTH} characters of letters, digits "
            "and '._+-', start with a letter or digit, and not contain '..'")
    return version


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key for natural version order (digit runs compare as numbers)."""
    # re.split with a group alternates text, digits, text...: same types at same positions.
    return tuple(int(part) if index % 2 else part
                 for index, part in enumerate(_DIGITS.split(version)))


def bump(version: str) -> str:
    """``version`` with its last run of digits incremented (``.1`` appended if it has none)."""
    matches = list(_DIGITS.finditer(version))
    if not matches:
        return f"{version}.1"
    last = matches[-1]
    number = str(int(last.group()) + 1).zfill(len(last.group()))
    return version[:last.start()] + number + version[last.end():]


def next_version(existing: Iterable[str]) -> str:
    """The version ``save_model`` assigns when given none (see the module docstring)."""
    taken = set(existing)
    if not taken:
        return "1"
    # Bumping raises the key at the last digit run, so the result sorts above every
    # existing version and cannot be taken.
    candidate = bump(max(taken, key=version_key))
    if len(candidate) > MAX_VERSION_LENGTH:
        raise InvalidVersionError("cannot derive a next version: give one explicitly")
    return candidate


def model_file_name(name: str, version: str) -> str:
    """A file name derived from a slug of name and version, plus a random part.

    The slug keeps files recognisable; the random part makes two names with the same slug
    (``"a b"`` and ``"a-b"``) or two concurrent saves never share a file.
    """
    slug = _UNSAFE_FILE_CHARS.sub("-", name).strip("-")[:48] or "model"
    return f"{slug}-v{version}-{secrets.token_hex(6)}.model"
