"""The settings store's two tables about people, one descriptor each (``compliance.personal_data``).

Seed 001's ``thread_contexts`` (conversation messages, expiring) and ``user_preferences``
(per-user overrides) hold personal data, so their descriptors make them part of DSR export,
erasure and retention through the one providers mechanism (``compliance.providers``): the
runtime registers a ``TableProvider`` over them like over any other owner's tables.

- ``user_preferences`` rows are owned by the keyed hash of their user; values are sealed under
  that user's data key (erasure shreds it). Kept ``preferences`` days after their last change.
- ``thread_contexts`` rows are owned by a user when ``save_thread_context`` was given
  ``user_id=``: then the messages are sealed under that user's key and the thread is exported
  and erased with them. A thread saved without one belongs to no subject: its messages are
  sealed under the platform's field key and it is only ever deleted by its expiry
  (``expires_at``, the retention rule of every thread).
"""

from compliance.personal_data import (PersonalTable, Retention, clear, key, sealed, subject_hash,
                                      timestamp)

_ROW_NUMBER = "internal row number (ordering and purge batches)"

THREAD_CONTEXTS = PersonalTable(
    database="settings", name="thread_contexts", export_as="thread_contexts",
    columns=(
        clear("thread_key"),
        clear("channel_id"),
        clear("thread_ts"),
        sealed("messages", null_as=[]),
        timestamp("created_at"),
        timestamp("updated_at"),
        timestamp("expires_at"),
        key("id", exported=False, why=_ROW_NUMBER),
        subject_hash("user_id_hash"),
    ),
    row_id=("thread_key",), subject_hash_column="user_id_hash", created="created_at",
    retention=Retention("expires_at"),
)

USER_PREFERENCES = PersonalTable(
    database="settings", name="user_preferences", export_as="user_preferences",
    columns=(
        clear("preference_key"),
        sealed("value"),
        timestamp("created_at"),
        timestamp("updated_at"),
        key("id", exported=False, why=_ROW_NUMBER),
        subject_hash("user_id_hash"),
    ),
    row_id=("user_id_hash", "preference_key"), subject_hash_column="user_id_hash",
    created="created_at", order_by="preference_key",
    retention=Retention("updated_at", window="preferences"),
)

SETTINGS_PERSONAL_TABLES = (THREAD_CONTEXTS, USER_PREFERENCES)
