"""Replicas that agree: three `twin serve` processes on real sockets, each with its own empty
data directory, sharing one PostgreSQL database pair and no disk. Under mixed concurrent load
with one replica killed with SIGKILL and restarted on a fresh data directory, every
acknowledged write is there and correct, and the audit trail is one chain that verifies with
every acknowledged request's event in it exactly once. If-Match holds across replicas, an
erasure on one is a 404 on every other at once, and a revoked token is refused by all within
TWIN_TOKEN_CACHE_SECONDS; while any replica runs, commands that replace data refuse."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from compliance.audit_codec import unpack_id
from replica_cluster import Client, Cluster, Replica, data_connection, deployment, twin, vault_connection
from storage_backends import concurrently

TOKEN_CACHE_SECONDS = 1


@pytest.fixture(scope="module")
def cluster(postgres_server, tmp_path_factory):
    """Three replicas on one set-up pair, serving as a role without DDL rights; torn down (and
    the databases dropped) at the end."""
    with deployment(tmp_path_factory.mktemp("replicas"), replicas=3,
                    TWIN_TOKEN_CACHE_SECONDS=str(TOKEN_CACHE_SECONDS)) as made:
        assert len(made.replicas) == 3
        yield made


def test_while_any_replica_runs_a_restore_is_refused_naming_it(cluster):
    refused = twin(cluster.env, "db", "restore", str(cluster.root / "no-such-set"), "--yes")
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "in use by a running service: twin serve" in line and "and 2 more" in line
    assert any(f"pid {r.process.pid} " in line for r in cluster.replicas)


def test_two_replicas_patching_with_one_etag_give_one_200_and_one_412_in_each_of_100_trials(cluster):
    client = Client(cluster)
    status, body, headers, _ = client(0, "POST", "/v1/profiles", {"user_id": "if-match", "personal": {"v": 0}})
    assert status == 201
    path = f"/v1/profiles/{body['profile_id']}"
    racers = [Client(cluster), Client(cluster)]
    for trial in range(100):
        etag = client(trial % 3, "GET", path)[2]["ETag"]
        barrier = threading.Barrier(2)
        statuses: list[int] = [0, 0]

        def patch(n: int) -> None:
            barrier.wait()
            statuses[n] = racers[n]((trial + n) % 3, "PATCH", path, {"personal": {"v": trial, "by": n}},
                                    {"If-Match": etag})[0]
        threads = [threading.Thread(target=patch, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200, 412], (trial, statuses)
    final = client(1, "GET", path)[1]["personal"]
    assert final["v"] == 99


def test_two_replicas_creating_at_once_never_hand_one_key_to_two_subjects(cluster):
    def create(slot: int, n: int) -> dict[str, str]:
        client, made = Client(cluster), {}
        for i in range(20):
            user = f"lease-{slot}-{n}-{i}"
            status, body, _, _ = client(slot, "POST", "/v1/profiles", {"user_id": user, "personal": {"n": user}})
            assert status == 201
            made[user] = body["profile_id"]
        return made

    made = {user: profile_id for part in concurrently(
        *(lambda slot=slot, n=n: create(slot, n) for slot in (0, 1) for n in range(3)), timeout=120)
        for user, profile_id in part.items()}

    assert len(made) == 120
    with data_connection(cluster) as data, vault_connection(cluster) as vault:
        keys = [r[0] for r in data.execute("SELECT subject_key_id FROM learning_profiles WHERE profile_id = ANY(%s)",
                                           (list(made.values()),))]
        assert len(keys) == 120 and None not in keys and len(set(keys)) == 120  # each its own key
        assert {r[0] for r in vault.execute("SELECT key_id FROM subject_keys WHERE key_id = ANY(%s)",
                                            (keys,))} == set(keys)
        holders = vault.execute("SELECT count(DISTINCT leased_to) FROM subject_keys").fetchone()[0]
        assert holders >= 2  # both replicas leased keys of their own
    reader = Client(cluster)
    for user, profile_id in list(made.items())[::10]:  # the third replica opens them all
        status, body, _, _ = reader(2, "GET", f"/v1/profiles/{profile_id}")
        assert (status, body["personal"]) == (200, {"n": user})


def test_an_erasure_on_one_replica_is_a_404_on_every_replica_at_once(cluster):
    client = Client(cluster)
    status, body, _, _ = client(0, "POST", "/v1/profiles", {"user_id": "erase-everywhere"})
    assert status == 201
    path = f"/v1/profiles/{body['profile_id']}"
    assert [client(slot, "GET", path)[0] for slot in range(3)] == [200, 200, 200]  # cached keys
    assert client(1, "DELETE", path)[0] == 200
    assert [client(slot, "GET", path)[0] for slot in range(3)] == [404, 404, 404]
    assert client(2, "POST", "/v1/profiles/lookup", {"user_id": "erase-everywhere"})[0] == 404


def test_a_revoked_token_is_refused_by_every_replica_within_the_token_cache_period(cluster):
    issued = twin(cluster.env, "tokens", "issue", "--role", "service", "--label", "revoked")
    token, token_id = issued.stdout.strip().splitlines()[0], None
    listed = twin(cluster.env, "tokens", "list")
    for line in listed.stdout.splitlines():
        if "revoked" in line.split():
            token_id = line.split()[0]
    assert token_id, listed.stdout
    client = Client(cluster, token)
    assert [client(slot, "GET", "/v1/models/info")[0] for slot in range(3)] == [200, 200, 200]
    assert twin(cluster.env, "tokens", "revoke", token_id).returncode == 0
    # Every replica cached the token before the revocation, so each entry is gone by then:
    # any request sent after it must be refused, however slowly the machine answers.
    cached_until = time.monotonic() + TOKEN_CACHE_SECONDS
    refused: set[int] = set()
    while len(refused) < 3:
        for slot in range(3):
            sent = time.monotonic()
            status = client(slot, "GET", "/v1/models/info")[0]
            if status == 401:
                refused.add(slot)
            else:
                assert sent < cached_until, (slot, status, sent - cached_until)


@dataclass
class Learner:
    """What one load client knows of its learner: the last state a replica acknowledged (or,
    after a request whose answer was lost with its replica, the state read back)."""

    profile_id: str
    etag: str
    personal: dict[str, Any]
    knowledge: dict[str, float] = field(default_factory=dict)


class Load:
    """Client threads, each with a learner of its own, cycling reads and writes over the live
    replicas; every acknowledged request id is kept, for the audit check."""

    OPS_PER_CLIENT = 24

    def __init__(self, cluster: Cluster, clients: int) -> None:
        self.cluster = cluster
        self.clients = clients
        self.acknowledged: list[str] = []
        self.learners: list[Learner] = []
        self.lock = threading.Lock()
        self.progress = threading.Condition(self.lock)
        self.lost = 0  # requests whose replica died under them
        self.down: set[int] = set()
        self.killed: list[Replica] = []  # replicas killed, or about to be: their answers may be lost
        # Cleared while a replica is being killed: a client whose answer was lost reads again
        # only once the database has settled what the dead replica had sent it.
        self.settled = threading.Event()
        self.settled.set()

    def _slot(self, i: int) -> int:
        with self.lock:
            live = [s for s in range(len(self.cluster.replicas)) if s not in self.down]
        return live[i % len(live)]

    def _ack(self, request_id: str) -> None:
        with self.progress:
            self.acknowledged.append(request_id)
            self.progress.notify_all()

    def wait_for(self, acknowledged: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.acknowledged) >= acknowledged, 60)

    def call(self, client: Client, i: int, *args: Any, ok: tuple[int, ...]) -> Any:
        """One request to a live replica; None when its replica died under it."""
        slot = self._slot(i)
        replica = self.cluster.replicas[slot]
        try:
            status, body, headers, request_id = client(slot, *args)
        except OSError:
            with self.lock:
                if not any(replica is killed for killed in self.killed):
                    raise  # a live replica failing, or too slow: no lost answer
                self.lost += 1
            assert self.settled.wait(120), "the killed replica's sessions never settled"
            return None
        assert status in ok, (args, status, body)
        self._ack(request_id)
        return status, body, headers

    def resync(self, client: Client, i: int, learner: Learner) -> None:
        """After a lost answer: the state as it is now (the lost write may or may not be in)."""
        while True:
            got = self.call(client, i + 1, "GET", f"/v1/profiles/{learner.profile_id}", ok=(200,))
            states = self.call(client, i + 1, "GET", f"/v1/profiles/{learner.profile_id}/knowledge",
                               ok=(200,))
            if got is not None and states is not None:
                learner.personal, learner.etag = got[1]["personal"], got[2]["ETag"]
                learner.knowledge = {s["topic"]: s["mastery_level"] for s in states[1]["items"]}
                return
            i += 1

    def run_client(self, n: int) -> None:
        client = Client(self.cluster)
        created = None
        while created is None:
            created = self.call(client, n, "POST", "/v1/profiles",
                                {"user_id": f"load-{n}", "personal": {"v": 0}}, ok=(201,))
            if created is None:  # the create may have landed: read it back by user id
                found = self.call(client, n + 1, "POST", "/v1/profiles/lookup", {"user_id": f"load-{n}"},
                                  ok=(200, 404))
                if found is not None and found[0] == 200:
                    created = found
        learner = Learner(created[1]["profile_id"], created[2]["ETag"], created[1]["personal"])
        with self.lock:
            self.learners.append(learner)
        path = f"/v1/profiles/{learner.profile_id}"
        for i in range(self.OPS_PER_CLIENT):
            kind = i % 4
            if kind in (0, 3):
                got = self.call(client, n + i, "GET", path, ok=(200,))
                if got is not None:
                    assert got[1]["personal"] == learner.personal, (n, i)
                    continue
            elif kind == 1:
                personal = {"v": i, "client": n}
                got = self.call(client, n + i, "PATCH", path, {"personal": personal},
                                {"If-Match": learner.etag}, ok=(200,))
                if got is not None:
                    learner.personal, learner.etag = personal, got[2]["ETag"]
                    continue
            else:
                topic, mastery = f"t{i % 3}", round(0.1 + i / 100, 2)
                got = self.call(client, n + i, "PUT", f"{path}/knowledge/math/{topic}",
                                {"mastery_level": mastery}, ok=(200, 201))
                if got is not None:
                    learner.knowledge[topic] = mastery
                    continue
            self.resync(client, n + i, learner)


def test_under_load_a_replica_killed_and_restarted_on_a_fresh_disk_loses_no_acknowledged_write(cluster):
    load = Load(cluster, clients=6)
    clients = [threading.Thread(target=load.run_client, args=(n,)) for n in range(load.clients)]
    for thread in clients:
        thread.start()
    load.wait_for(40)  # mid-load
    load.settled.clear()
    with load.lock:
        load.down.add(2)  # new requests avoid it; those in flight there are lost
        load.killed.append(cluster.replicas[2])
    try:
        cluster.kill(2)  # returns once its database sessions have ended
    finally:
        load.settled.set()
    assert any(thread.is_alive() for thread in clients)  # killed mid-load
    killed_data = cluster.replicas[2].data_dir
    cluster.start(slot=2)  # a fresh, empty data directory
    assert cluster.replicas[2].data_dir != killed_data
    with load.lock:
        load.down.discard(2)
    for thread in clients:
        thread.join(120)
    assert not any(thread.is_alive() for thread in clients)
    assert len(load.learners) == load.clients

    # Every acknowledged write, read back through each replica.
    checker = Client(cluster)
    for n, learner in enumerate(load.learners):
        status, body, headers, request_id = checker(n % 3, "GET", f"/v1/profiles/{learner.profile_id}")
        assert status == 200 and body["personal"] == learner.personal
        assert headers["ETag"] == learner.etag
        load.acknowledged.append(request_id)
        status, states, _, request_id = checker((n + 1) % 3, "GET",
                                                f"/v1/profiles/{learner.profile_id}/knowledge")
        assert {s["topic"]: s["mastery_level"] for s in states["items"]} == learner.knowledge
        load.acknowledged.append(request_id)

    cluster.stop_all()
    verified = twin(cluster.env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with vault_connection(cluster) as vault:
        assert vault.execute("SELECT count(*) FROM audit_staged_events").fetchone()[0] == 0
        events = vault.execute("SELECT event_id, request_id, action, resource_ref FROM audit_log").fetchall()
    events = [(bytes(e[0]), unpack_id(e[1]), e[2], e[3]) for e in events]
    assert len({e[0] for e in events}) == len(events)  # no event twice
    assert len({e[1:] for e in events}) == len(events)  # no request recorded the same access twice
    recorded = {e[1] for e in events}
    missing = [r for r in load.acknowledged if r not in recorded]
    assert missing == [], f"{len(missing)} acknowledged requests without their audit event"
