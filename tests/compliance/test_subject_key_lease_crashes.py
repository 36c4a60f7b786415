"""What a process that stopped (or was killed) with a lease leaves behind: unbound keys its
creates never used, bindings the vault never recorded; none of it loses an acknowledged profile
and all of it is reclaimed once the lease is long over. Real runtime, on both backends."""

from __future__ import annotations

from compliance.subject_key_lease import LEASE_SECONDS, RECLAIM_AFTER_SECONDS
from leased_keys import create, key_rows, profile_key, readable


def test_a_start_reclaims_the_keys_a_stopped_process_left_once_their_lease_is_long_over(
        runtime, quiet_lease, config, keyring, clock):
    from twin.runtime import Runtime

    keyring.save(config.keyring_path)  # the deployment's keyring file, which a start loads
    view = create(runtime, "kept")
    runtime.close()  # its lease's other 63 keys were never used, and the binding never recorded
    clock.advance(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)

    started = Runtime.open(config, clock=clock)
    try:
        [row] = key_rows(started)
        assert (row["key_id"], row["user_id_hash"]) == (profile_key(started, "kept"), started.hasher.hash("kept"))
        assert readable(started, view)
    finally:
        started.close()
