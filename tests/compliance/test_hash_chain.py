"""The one hash-chain mechanism: canonical link hashes, the walker, the verification result."""

from __future__ import annotations

from compliance.hash_chain import GENESIS_HASH, Break, ChainVerification, ChainWalker, link_hash


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
