"""Seeded, leakage-free train/dev/test splits.

Records are split by *group* (a normalised question, a subject country, a source page), never one by
one, so no group (and hence no question text or subject entity) lands in two splits. Everything is sorted
before a `random.Random(seed)` touches it, so the result never depends on dict/set order or hashing.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable

SPLITS = ("train", "dev", "test")
TEST_N, DEV_N = 300, 200
FEWSHOT_TRAIN_N = 100      # the unseen tasks' train split is only a few-shot pool


def assign_groups(counts: dict[str, int], seed: int, test_n: int = TEST_N, dev_n: int = DEV_N,
                  eligible: Callable[[str], bool] | None = None) -> dict[str, str]:
    """Map each group to a split: shuffle the (sorted) groups, fill test, then dev, the rest is train.

    counts: group -> how many records it holds. A group goes to test/dev only while that split holds fewer
    than test_n/dev_n records and only if `eligible(group)` (e.g. "the answer occurs in the corpus").
    """
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    filled = {"test": 0, "dev": 0}
    out = {}
    for g in order:
        split = "train"
        if eligible is None or eligible(g):
            if filled["test"] < test_n:
                split = "test"
            elif filled["dev"] < dev_n:
                split = "dev"
        if split != "train":
            filled[split] += counts[g]
        out[g] = split
    return out


def sample(records: list[dict], n: int | None, seed: int) -> list[dict]:
    """A seeded random subset of at most n records (all if n is None), in a seeded random order.

    Records are sorted by id first; the shuffled order makes a `limit` on a split a random subset.
    """
    recs = sorted(records, key=lambda r: r["id"])
    rng = random.Random(seed)
    rng.shuffle(recs)
    return recs if n is None else recs[:n]


def split_records(records: Iterable[dict], group_of: Callable[[dict], str], seed: int,
                  train_n: int | None = None, eligible: Callable[[str], bool] | None = None,
                  test_n: int = TEST_N, dev_n: int = DEV_N) -> dict[str, list[dict]]:
    """Group, assign groups to splits, then sample test/dev to exactly test_n/dev_n (where data allows)
    and train to train_n (None: keep all). Returns {split: records}."""
    records = list(records)
    counts: dict[str, int] = {}
    for r in records:
        counts[group_of(r)] = counts.get(group_of(r), 0) + 1
    where = assign_groups(counts, seed, test_n, dev_n, eligible)
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in records:
        by_split[where[group_of(r)]].append(r)
    caps = {"train": train_n, "dev": dev_n, "test": test_n}
    return {s: sample(by_split[s], caps[s], seed + i) for i, s in enumerate(SPLITS)}


def unique_ids(records: list[dict]) -> None:
    """Raise if two records share an id (a builder bug, never user input)."""
    seen = set()
    for r in records:
        if r["id"] in seen:
            raise AssertionError(f"duplicate record id {r['id']!r}")
        seen.add(r["id"])
