"""Random corpus passages as extra retrieval negatives for small-batch training (a CPU-budget addition; the
paper's large GPU batches get enough in-batch negatives).

Why: with 8 queries per step, the in-batch negatives all come from the pseudo-labeller's neighbourhoods of
those queries, so nothing in training ever shows the model the passages that score high for *every* query
(the "hub" passages of raw q.k scores). Random passages drawn from the whole corpus are such negatives.
The draw is a function of (seed, step) only, so every rank and a resumed run draw the same passages.
"""
from __future__ import annotations

import random


def random_passages(pool: list[str], n: int, seed: int, step: int) -> list[str]:
    """`n` distinct passage ids from `pool`, a function of (seed, step) only (same on every rank, on resume)."""
    if n <= 0 or not pool:
        return []
    return random.Random(f"random-negatives:{seed}:{step}").sample(pool, min(n, len(pool)))
