"""How a model is turned into the bytes the registry stores, and back (the ``format`` column).

- ``bytes``: the caller serialised the model (ONNX, safetensors, JSON weights...); the bytes are
  stored and returned exactly as given. Prefer this: such formats carry no code.
- ``pickle``: any other Python object, pickled on save as the seed did. **Unpickling runs
  arbitrary code**: a registry file or row changed by anyone able to write the model directory
  or the database would execute code in the process that loads it. So loading a pickle needs
  ``allow_pickle=True``, and the stored SHA-256 is verified before a single byte is unpickled
  (which proves the bytes are the ones saved, not that whoever saved them was trustworthy).
"""

from __future__ import annotations

import pickle
from typing import Any

from .errors import PickleNotAllowedError

BYTES = "bytes"
PICKLE = "pickle"
FORMATS = (BYTES, PICKLE)


def serialise(model: Any) -> tuple[bytes, str]:
    """The bytes to store for ``model`` and their format: bytes-like as they are, else pickled."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), BYTES
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), PICKLE


def check_allowed(model_format: str, *, allow_pickle: bool, what: str) -> None:
    """Refuse to load a pickle unless the caller opted in. ``what`` names it in the refusal."""
    if model_format == PICKLE and not allow_pickle:
        raise PickleNotAllowedError(
            f"{what} was saved as a pickle; unpickling runs code, so load it with "
            "allow_pickle=True only if you trust everyone who can write this registry")


def deserialise(data: bytes, model_format: str) -> Any:
    """The model from its stored bytes, already checked against their SHA-256 and allowed
    (``check_allowed``)."""
    if model_format == BYTES:
        return data
    return pickle.loads(data)  # noqa: S301 - opt-in, after the SHA-256 check (module docstring)
