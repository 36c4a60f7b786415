"""The in-memory map that remembers verified tokens and unwrapped keys for a short while."""

from __future__ import annotations

from compliance.expiring_cache import ExpiringCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_until_it_expires():
    clock = Clock()
    cache = ExpiringCache(10, 8, clock)
    cache.put("k", "v", cache.token())

    clock.now += 9.9
    assert cache.get("k") == "v"
    clock.now += 0.2
    assert cache.get("k") is None


def test_a_read_that_predates_a_forget_is_not_remembered():
    cache = ExpiringCache(10, 8, Clock())
    before_read = cache.token()
    cache.forget("k")  # another thread revoked or destroyed it after our read

    cache.put("k", "stale", before_read)

    assert cache.get("k") is None
    cache.put("k", "fresh", cache.token())
    assert cache.get("k") == "fresh"


def test_when_full_the_entry_put_longest_ago_goes():
    cache = ExpiringCache(10, 2, Clock())
    for key in ("a", "b", "a", "c"):  # putting "a" again makes it the newest
        cache.put(key, key.upper(), cache.token())

    assert sorted(cache) == ["a", "c"]


def test_forget_matching_drops_only_what_matches():
    cache = ExpiringCache(10, 8, Clock())
    for key, owner in (("t1", "alice"), ("t2", "bob"), ("t3", "alice")):
        cache.put(key, owner, cache.token())

    cache.forget_matching(lambda _, owner: owner == "alice")

    assert list(cache) == ["t2"]


def test_a_zero_period_or_size_keeps_nothing():
    for seconds, size in ((0, 8), (10, 0)):
        cache = ExpiringCache(seconds, size, Clock())
        cache.put("k", "v", cache.token())
        assert len(cache) == 0 and cache.get("k") is None


def test_its_repr_shows_no_key_or_value():
    cache = ExpiringCache(10, 8, Clock())
    cache.put("subject-hash", b"key material", cache.token())

    assert repr(cache) == "ExpiringCache(1 entries)"


def test_an_entry_expires_at_the_instant_its_period_ends():
    clock = Clock()
    cache = ExpiringCache(10, 8, clock)
    cache.put("k", "v", cache.token())

    clock.now += 10
    assert cache.get("k") is None


def test_a_read_that_predates_the_second_of_two_forgets_is_not_remembered():
    cache = ExpiringCache(10, 8, Clock())
    for forget in (lambda: cache.forget("other"), lambda: cache.forget_matching(lambda key, _: key == "other")):
        forget()
        before_read = cache.token()  # after one forget, before the next
        forget()

        cache.put("k", "stale", before_read)

        assert cache.get("k") is None


def test_forget_matching_may_match_on_the_key():
    cache = ExpiringCache(10, 8, Clock())
    for key in ("alice:1", "bob:1", "alice:2"):
        cache.put(key, "token", cache.token())

    cache.forget_matching(lambda key, _: key.startswith("alice:"))

    assert list(cache) == ["bob:1"]


def test_a_one_second_period_or_a_single_entry_still_remembers():
    for seconds, size in ((1, 8), (0.5, 8), (10, 1)):
        cache = ExpiringCache(seconds, size, Clock())
        cache.put("k", "v", cache.token())
        assert cache.get("k") == "v", (seconds, size)
    cache.put("k2", "v2", cache.token())  # the one entry is the newest
    assert list(cache) == ["k2"]
