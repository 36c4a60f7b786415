"""The settings store: configurations, typed app settings, business goals, performance metrics,
thread contexts and user preferences.

One class over one ``settings`` database, made of one part per concept: ``configurations``
(sensitive values encrypted, every change in ``config_audit`` with keyed hashes of secrets),
``app_settings``, ``goals``, ``metrics``, ``health``, ``threads`` and ``preferences`` (personal
data, see ``tables``); ``base`` and ``people`` hold what they share.

    >>> store = SettingsStore.from_keyring(db, keyring, actor="ops")
    >>> store.set_config("openai_api_key", "sk-...", category="ai", sensitive=True)
    >>> store.get_config("openai_api_key")
"""

from __future__ import annotations

from compliance.field_crypto import FieldCipher
from compliance.id_hashing import SubjectHasher
from compliance.keyring import Keyring, derive_key
from compliance.subject_keys import SubjectKeyStore
from twin.storage import Database

from .app_settings import AppSettings
from .configurations import Configurations
from .goals import BusinessGoals
from .health import HealthCheck
from .metrics import PerformanceMetrics
from .preferences import UserPreferences
from .threads import ThreadContexts
from .values import check_key

_AUDIT_HASH_LABEL = "settings-store/config-audit-hash"


class SettingsStore(Configurations, AppSettings, BusinessGoals, PerformanceMetrics, HealthCheck,
                    ThreadContexts, UserPreferences):
    """Settings in one ``settings`` database (already migrated).

    ``actor`` is recorded as ``changed_by`` when a call does not name one. ``audit_hash_key``
    keys the HMAC of sensitive values in the change log; without it a plain SHA-256 is used
    (weaker: a guessable secret can be confirmed from its hash). ``from_keyring`` derives one.
    ``subject_keys`` and ``hasher`` (the privacy vault's subject keys, the keyring's user-id
    hasher) are needed by per-user data only: user preferences and threads with a ``user_id``.
    """

    def __init__(self, db: Database, cipher: FieldCipher, *, actor: str = "system",
                 audit_hash_key: bytes | None = None, subject_keys: SubjectKeyStore | None = None,
                 hasher: SubjectHasher | None = None) -> None:
        self.db = db
        self.cipher = cipher
        self.actor = check_key(actor, "actor")
        self._audit_hash_key = audit_hash_key
        self.subject_keys = subject_keys
        self.hasher = hasher

    @classmethod
    def from_keyring(cls, db: Database, keyring: Keyring, *, actor: str = "system",
                     vault: Database | None = None,
                     subject_keys: SubjectKeyStore | None = None) -> "SettingsStore":
        """A store using the keyring's field keys and an audit-hash key derived from it; with
        the privacy ``vault``, per-user data too (subject keys, hashes under the id pepper).

        Beside learner profiles, pass the runtime's ``subject_keys`` instead of ``vault``: its
        key bindings find a subject whose new profile names a leased key the vault has not
        bound yet (``compliance.subject_key_lease``), where a key store of its own would make
        that subject a second key."""
        cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        if subject_keys is None and vault is not None:
            subject_keys = SubjectKeyStore(vault, cipher)
        return cls(db, cipher, actor=actor,
                   audit_hash_key=derive_key(keyring.id_pepper, _AUDIT_HASH_LABEL),
                   subject_keys=subject_keys,
                   hasher=SubjectHasher(keyring.id_pepper))

    def __repr__(self) -> str:
        return f"SettingsStore(db={self.db.name!r}, actor={self.actor!r})"
