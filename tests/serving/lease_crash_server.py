"""`twin serve` with one SIGKILL planted at a named step of subject-key provisioning (tests only).

``LEASE_CRASH_AT`` names the step, ``LEASE_CRASH_AFTER`` on which call of it (default 1),
``LEASE_CRASH_MARK`` a file written just before the kill, so the worker the supervisor starts in
the killed one's place does not die again. The steps:

- ``after_lease``: a batch of keys was leased (durable, unbound), none used yet;
- ``after_create_commit``: a profile's row (naming its key) was committed, the response not sent
  and the binding not queued;
- ``before_binding`` / ``after_binding``: recording bindings (the lease's flush, or a reclaim), before /
  after its vault commit;
- ``before_destroy``: a reclaim bound the referenced keys and was about to delete the others.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import compliance.subject_key_lease as lease_module

POINT = os.environ["LEASE_CRASH_AT"]
AFTER = int(os.environ.get("LEASE_CRASH_AFTER", "1"))
MARK = Path(os.environ["LEASE_CRASH_MARK"])
_calls = [0]


def _die_once() -> None:
    _calls[0] += 1
    if _calls[0] >= AFTER and not MARK.exists():
        MARK.write_text(POINT)
        os.kill(os.getpid(), signal.SIGKILL)


def _before(fn):
    def wrapped(*args, **kwargs):
        _die_once()
        return fn(*args, **kwargs)
    return wrapped


def _after(fn):
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        _die_once()
        return result
    return wrapped


PLANTS = {
    "after_lease": (lease_module.SubjectKeyLease, "lease_batch", _after),
    "after_create_commit": (lease_module.SubjectKeyLease, "bound", _before),
    "before_binding": (lease_module, "bind", _before),
    "after_binding": (lease_module, "bind", _after),
    "before_destroy": (lease_module, "_destroy_unbound", _before),
}
owner, name, wrap = PLANTS[POINT]
setattr(owner, name, wrap(getattr(owner, name)))

if __name__ == "__main__":
    if sys.argv[1:2] == ["reclaim"]:  # a reclaim far in the future, as a later process runs it
        from datetime import timedelta

        from twin.config import Config
        from twin.runtime import Runtime
        runtime = Runtime.open(Config.from_env(dict(os.environ)))
        lease_module.reclaim(runtime.keys, now=runtime.clock() + timedelta(hours=3))
        sys.exit(0)
    from twin.cli import main
    main()
