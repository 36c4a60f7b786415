"""Named errors of the model registry; the REST layer maps each to one HTTP status."""

from __future__ import annotations


class ModelRegistryError(Exception):
    """Base class of every model-registry error."""


class InvalidModelFieldError(ModelRegistryError, ValueError):
    """An argument is not acceptable (422): wrong type, out of range, not JSON-serialisable."""


class InvalidModelNameError(InvalidModelFieldError):
    """A model name that is empty, too long, or could escape the model directory."""


class InvalidVersionError(InvalidModelFieldError):
    """A version string outside ``[A-Za-z0-9][A-Za-z0-9._+-]*`` (at most 64 characters)."""


class ModelNotFoundError(ModelRegistryError, LookupError):
    """No such model name, version, or no active version (404)."""


class DuplicateVersionError(ModelRegistryError):
    """That name already has that version (409)."""


class ModelFileMissingError(ModelRegistryError):
    """The version has no stored file (registered without one, or the file was removed)."""


class ChecksumMismatchError(ModelRegistryError):
    """The model file's SHA-256 differs from the one recorded when it was saved: refused."""


class PickleNotAllowedError(ModelRegistryError):
    """The version was stored as a pickle and the caller did not pass ``allow_pickle=True``."""
