"""The one hash-chain mechanism: canonical link hashes, the walker, the verification result."""

from __future__ import annotations

import hashlib
import struct

import pytest

from compliance.hash_chain import (GENESIS_HASH, Break, ChainVerification, ChainWalker, link_hash,
                                   packed_link_hash)


def _chain(n: int) -> list[tuple[int, str, str]]:
    links, prev = [], GENESIS_HASH
    for position in range(1, n + 1):
        digest = link_hash({"position": position, "prev_hash": prev}, ascii_only=True)
        links.append((position, prev, digest))
        prev = digest
    return links


def _walk(links, contiguous=True, tamper=None):
    walker = ChainWalker(contiguous=contiguous)
    for position, prev, stored in links:
        computed = link_hash({"position": position, "prev_hash": prev}, ascii_only=True)
        if tamper == position:
            computed = "f" * 64
        problem = walker.check(position, prev, stored, computed)
        if problem:
            return walker, position, problem
    return walker, None, None


def test_an_intact_chain_walks_to_its_end():
    walker, bad, _ = _walk(_chain(5))
    assert (bad, walker.checked, walker.position) == (None, 5, 5)


def test_an_edit_a_deletion_and_a_reordering_each_break_where_they_happened():
    links = _chain(6)
    assert _walk(links, tamper=3)[1:] == (3, Break.CONTENT)
    assert _walk(links[:2] + links[3:])[1:] == (4, Break.POSITION)
    assert _walk(links[:2] + links[3:], contiguous=False)[1:] == (4, Break.LINK)
    assert _walk([links[1], links[0]])[1:] == (2, Break.POSITION)


def test_a_checkpoint_anchors_the_chain_after_deleted_links():
    links = _chain(6)
    walker = ChainWalker(contiguous=True)
    walker.anchor(3, links[2][2])

    for position, prev, stored in links[3:]:
        assert walker.check(position, prev, stored,
                            link_hash({"position": position, "prev_hash": prev}, ascii_only=True)) is None
    assert walker.checked == 3


def test_the_two_canonical_forms_differ_only_in_how_they_spell_non_ascii_text():
    assert link_hash({"a": "x"}, ascii_only=True) == link_hash({"a": "x"}, ascii_only=False)
    assert link_hash({"a": "é"}, ascii_only=True) != link_hash({"a": "é"}, ascii_only=False)


def test_one_result_type_reads_for_each_chain():
    broken = ChainVerification(False, 3, 4, "content does not match its hash (edited?)")
    assert not broken and broken.summary == "audit trail BROKEN at event 4: content does not match its hash (edited?)"
    ledger = ChainVerification(True, 8, chain="ledger", item="entry", items="entries")
    assert ledger and ledger.summary == "ledger OK: 8 entries verified"
    assert ledger.to_dict() == {"ok": True, "checked": 8, "first_bad": None, "reason": None}
    resumed = ChainVerification(True, 2, since=40)
    assert resumed.to_dict() == {"ok": True, "checked": 2, "first_bad": None, "reason": None, "since": 40}
    assert resumed.summary == "audit trail OK: 2 events verified after the verified seal at event 40"


# -- the documented formats, as an auditor recomputes them without our code --------------------

def test_a_link_hash_is_sha256_of_sorted_compact_json_in_either_spelling():
    content = {"z": 1, "a": "é", "m": [1, 2]}  # not in key order

    assert link_hash(content, ascii_only=True) == hashlib.sha256(
        b'{"a":"\\u00e9","m":[1,2],"z":1}').hexdigest()
    assert link_hash(content, ascii_only=False) == hashlib.sha256(
        '{"a":"é","m":[1,2],"z":1}'.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("number", [float("nan"), float("inf")])
def test_a_link_holding_a_number_json_cannot_spell_is_refused(number):
    with pytest.raises(ValueError):
        link_hash({"a": number}, ascii_only=True)


def test_a_packed_link_hash_is_sha256_of_the_documented_tagged_fields():
    prev = bytes(range(32))
    lone_surrogate = "\ud800"  # JSON can carry one; it must hash, not fail
    expected = hashlib.sha256(b"".join([
        b"audit-v1", b"\0", prev, struct.pack(">q", 7),
        b"N",
        b"I", struct.pack(">q", -3),
        b"B", struct.pack(">I", 2), b"\x00\xff",
        b"S", struct.pack(">I", 2), "é".encode("utf-8"),
        b"S", struct.pack(">I", 3), b"\xed\xa0\x80",
    ])).digest()

    assert packed_link_hash(b"audit-v1", prev, 7, (None, -3, b"\x00\xff", "é", lone_surrogate)) == expected


def test_a_packed_link_hash_is_the_same_when_its_texts_were_encoded_before(monkeypatch):
    import compliance.hash_chain as hash_chain

    class Spelt(str):
        pass
    prev, texts = bytes(32), ("tok_1", "read", "é", "\ud800")
    expected = hashlib.sha256(b"".join([b"d", b"\0", prev, struct.pack(">q", 1)] + [
        b"S" + struct.pack(">I", len(raw)) + raw for raw in (t.encode("utf-8", "surrogatepass") for t in texts)
    ])).digest()

    assert packed_link_hash(b"d", prev, 1, texts) == expected
    assert packed_link_hash(b"d", prev, 1, texts) == expected  # their encodings remembered
    assert packed_link_hash(b"d", prev, 1, tuple(Spelt(t) for t in texts)) == expected
    monkeypatch.setattr(hash_chain, "_TEXT_PARTS_MAX", 3)
    sizes = []
    for i in range(10):
        packed_link_hash(b"d", prev, 1, (f"value {i}",))
        sizes.append(len(hash_chain._TEXT_PARTS))
    assert max(sizes) == 3  # bounded: never more than _TEXT_PARTS_MAX encodings kept
    assert packed_link_hash(b"d", prev, 1, texts) == expected
