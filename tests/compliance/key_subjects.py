"""The two subjects of the subject-key tests (test_subject_keys.py, test_subject_key_readers.py,
test_subject_key_proofs.py; their fixtures ``key_store`` and ``other_key_store``: conftest.py)."""

ALICE, BOB = "a" * 64, "b" * 64
