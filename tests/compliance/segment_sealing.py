"""A segment sealed and opened by hand, as the on-disk format says (``compliance.audit_archive_segments``'
module docstring), not through the module: what a key holder or an earlier release could store."""

from __future__ import annotations

from compliance import envelope


def aad(part: str, first_seq: int) -> bytes:
    """What a segment's data key ("segment_key") and content ("segment") are bound to."""
    return f"learner-twin|audit_archive|{part}|{first_seq}".encode()


def seal(compressed: bytes, first_seq: int, keys, *, version: int = 2) -> bytes:
    """A segment of ``version`` whose content is ``compressed`` (zlib, as encode compresses)."""
    data_key, wrapped, _ = envelope.new_data_key(keys, aad("segment_key", first_seq))
    sealed = envelope.data_cipher(data_key).encrypt(compressed, aad("segment", first_seq))
    return b"LTAA" + bytes([version]) + len(wrapped).to_bytes(2, "big") + wrapped + sealed


def opened(body: bytes, first_seq: int, keys) -> bytes:
    """The compressed content of a segment."""
    wrapped_len = int.from_bytes(body[5:7], "big")
    data_key = envelope.unwrap(keys, body[7:7 + wrapped_len], aad("segment_key", first_seq))
    return envelope.data_cipher(data_key).decrypt(body[7 + wrapped_len:], aad("segment", first_seq))
