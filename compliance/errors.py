"""Named exceptions of the compliance package."""


class ComplianceError(Exception):
    """Base class for every error raised by the compliance package."""


class KeyringError(ComplianceError):
    """The keyring is missing, unreadable, malformed or unsafely stored."""


class CryptoError(ComplianceError):
    """Base class for field-encryption failures."""


class DecryptionError(CryptoError):
    """A ciphertext failed authentication: tampered, moved to another row/column, or wrong key."""


class UnknownKeyVersionError(DecryptionError):
    """A ciphertext names a key version the keyring does not hold."""


class MalformedCiphertextError(DecryptionError):
    """A value is not a ciphertext in our format (too short or unknown format version)."""
