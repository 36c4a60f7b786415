"""The two subjects of the subject-key tests (test_subject_keys.py, test_subject_key_readers.py,
test_subject_key_proofs.py; their fixtures ``key_store`` and ``other_key_store``: conftest.py),
and a vault that counts the key lookups reaching it."""

ALICE, BOB = "a" * 64, "b" * 64


class CountingVault:
    """The real vault, counting the key lookups that reach it: ``query_one`` of ``subject_keys``
    (the one-row read of a subject's key on every path that misses the remembered key). The
    many-row reads of ``key_opening`` and the lease (``query``) are not counted."""

    def __init__(self, vault) -> None:
        self._vault, self.lookups = vault, 0

    def __getattr__(self, name):
        return getattr(self._vault, name)

    def query_one(self, sql, *args, **kwargs):
        if "FROM subject_keys" in sql:
            self.lookups += 1
        return self._vault.query_one(sql, *args, **kwargs)
