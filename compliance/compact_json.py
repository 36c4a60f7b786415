"""Compact JSON text (no spaces) from an encoder made once: what every request writes.

``json.dumps`` with arguments builds a ``JSONEncoder`` and then its C encoder on every call;
for the small documents of a request (an audit event, a response body) that set-up was about
40% of the call. ``compact_encoder`` makes the C encoder once and returns a function with
``json.dumps``'s output for the same options.
"""

from __future__ import annotations

import json
from json import encoder as _stdlib
from typing import Any, Callable


def compact_encoder(*, ensure_ascii: bool, sort_keys: bool = False,
                    default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A function equal to ``json.dumps(value, separators=(",", ":"), ensure_ascii=...,
    sort_keys=..., default=...)``, except that a value containing itself is not detected as
    such (it fails with ``RecursionError`` instead of ``ValueError``): for documents built
    from plain values, as requests' are."""
    fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                                default=default, check_circular=False)
    make = _stdlib.c_make_encoder
    strings = _stdlib.c_encode_basestring_ascii if ensure_ascii else _stdlib.c_encode_basestring
    if make is None or strings is None:  # a Python without the C accelerator
        return fallback.encode
    encode = make(None, fallback.default, strings, None, ":", ",", sort_keys, False, True)

    def dumps(value: Any) -> str:
        if isinstance(value, str):  # what JSONEncoder.encode does for a bare string
            return strings(value)
        return "".join(encode(value, 0))

    return dumps
