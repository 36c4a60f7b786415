"""A key's fingerprint: a short public name that tells two keys apart without revealing either.

HMAC-SHA256 of a fixed label under the key, first 16 hex digits (64 bits). Printed in errors
("cannot be opened with this key ... fingerprint f") and recorded in backup manifests, so an
operator can tell which key a file needs. Knowing it does not help guess the key.
"""

from __future__ import annotations

import hashlib
import hmac

_LABEL = b"learner-twin/key-fingerprint/v1"


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()[:16]
