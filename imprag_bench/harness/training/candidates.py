"""Candidate sets for retrieval training (paper 4.2): pseudo-labels from an off-the-shelf retriever.

For each training query: the retriever's top-`n_pos` passages are pseudo-positives P(q); `n_hard` hard
negatives N_h(q) are sampled (seeded) from its ranks `hard_from`..`hard_to`; in-batch negatives are the
other queries' candidates and are added by the training loop. The paper uses Contriever-MSMARCO; the
offline default is all-MiniLM-L6-v2. Shared by ImpRAG, RA-DIT and RA-DIT-Llama.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidates:
    """One query's pseudo-positives and hard negatives (passage ids)."""

    positives: tuple[str, ...]
    hard_negatives: tuple[str, ...]


def pseudo_label(queries: list[str], search, seed: int = 0, n_pos: int = 5, n_hard: int = 3,
                 hard_from: int = 10, hard_to: int = 50) -> list[Candidates]:
    """Run `search(queries, k) -> ranked ids` once and cut each ranking into positives and hard negatives."""
    ranked = search(queries, hard_to)
    out = []
    for i, ids in enumerate(ranked):
        pool = list(ids[hard_from:hard_to])
        rng = random.Random(f"{seed}:{i}:{queries[i]}")
        hard = rng.sample(pool, min(n_hard, len(pool)))
        out.append(Candidates(tuple(ids[:n_pos]), tuple(hard)))
    return out


def pseudo_label_answers(queries: list[str], golds: list[list[str]], search, passage_text, seed: int = 0,
                         n_pos: int = 5, n_hard: int = 3, hard_from: int = 10, hard_to: int = 50) -> list[Candidates]:
    """A CPU-budget variant of `pseudo_label` (not the paper's): positives are the retriever's top-`hard_to`
    passages that contain a gold answer (normalised substring, ranked order, at most `n_pos`), or the plain
    top-`n_pos` when none does; hard negatives are sampled from ranks `hard_from`..`hard_to` among passages
    without an answer. Only ~1/3 of mini-KILT train questions have an answer in MiniLM's top-5, so the plain
    labels are mostly noise, which a few hundred CPU steps cannot average out."""
    from imprag_bench.harness.metrics import contains_answer

    ranked = search(queries, hard_to)
    out = []
    for i, ids in enumerate(ranked):
        has = [contains_answer(golds[i], t) for t in passage_text(list(ids))]
        pos = [p for p, h in zip(ids, has) if h][:n_pos] or list(ids[:n_pos])
        pool = [p for p, h in zip(ids[hard_from:hard_to], has[hard_from:hard_to]) if not h and p not in pos]
        rng = random.Random(f"{seed}:{i}:{queries[i]}")
        out.append(Candidates(tuple(pos), tuple(rng.sample(pool, min(n_hard, len(pool))))))
    return out
