"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Each item scores ``sum(1 / (k + rank))`` over the rankings it appears in (ranks start at 1).
Only ranks matter, so BM25 scores and cosine similarities, which live on unrelated scales,
can be fused without calibration; ``k = 60`` is the paper's value.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(rankings: Iterable[Sequence[T]], *, k: float = 60,
                           limit: int | None = None) -> list[tuple[T, float]]:
    """Items of all ``rankings`` (each best first) fused, as (item, score) best first.

    An item repeated within one ranking counts at its best rank only. Ties keep the order
    in which items were first seen (earlier rankings first), so results are deterministic.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, not {k}")
    scores: dict[T, float] = {}
    for ranking in rankings:
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    fused = sorted(scores.items(), key=lambda pair: -pair[1])
    return fused if limit is None else fused[:limit]
