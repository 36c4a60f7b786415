"""Privacy mechanisms of learner twin: keyring, field crypto, ID hashing, subject keys,
retention, data-subject requests, consent and the audit trail.

Nothing in this package imports Flask: routes and scripts are thin callers of it.
"""
