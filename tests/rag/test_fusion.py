"""Reciprocal rank fusion of several rankings."""

from __future__ import annotations

import pytest

from twin.rag import reciprocal_rank_fusion


def test_scores_are_sums_of_one_over_k_plus_rank():
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60))
    assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})


def test_an_item_ranked_well_by_both_beats_one_ranked_first_by_only_one():
    fused = reciprocal_rank_fusion([["kw_top", "both"], ["vec_top", "both"]])
    assert fused[0][0] == "both"


def test_results_are_best_first_and_limited():
    fused = reciprocal_rank_fusion([["a", "b", "c", "d"], ["d", "c"]], limit=2)
    assert [item for item, _ in fused] == ["d", "c"]
    assert fused[0][1] >= fused[1][1]


def test_ties_keep_first_seen_order():
    fused = reciprocal_rank_fusion([["x", "y"], ["y", "x"]])
    assert [item for item, _ in fused] == ["x", "y"]


def test_a_repeated_item_counts_once_per_ranking_at_its_best_rank():
    fused = dict(reciprocal_rank_fusion([["a", "a", "b"]], k=0))
    assert fused == pytest.approx({"a": 1.0, "b": 1 / 3})


def test_empty_rankings_fuse_to_nothing():
    assert reciprocal_rank_fusion([[], []]) == []


def test_negative_k_is_rejected():
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=-1)
