"""Extra retrieval negatives for small-batch training: a FIFO bank of recent passage embeddings plus
random corpus passages (a CPU-budget addition; the paper's GPU batches get enough in-batch negatives).

Why: with 8 queries per step, the in-batch negatives all come from the pseudo-labeller's neighbourhoods of
those queries, so nothing in training ever shows the model the passages that score high for *every* query
(the "hub" passages of raw q.k scores, results/training/README.md). Random corpus passages are negatives
drawn from the whole corpus; the bank keeps the last `size` candidate and random embeddings (stop-grad,
computed by slightly older weights, as in cross-batch memory, Wang et al. 2020) so that each query is
contrasted with hundreds of passages for the price of a few forward passes. Gradients from these columns
reach the query side only.

No preset uses the bank (measured harmful in one run, see imprag_bench.imprag.objective); random negatives are used.
The bank is part of the training state: `save`/`load` write it next to the checkpoint so a resumed run
ends exactly where an uninterrupted one does.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import Tensor

BANK_FILE = "negative_bank.safetensors"


class NegativeBank:
    """Most recent `size` (passage id, embedding) pairs, newest last; ids are unique in the bank."""

    def __init__(self, size: int, dim: int):
        self.size = size
        self.ids: list[str] = []
        self.emb = torch.zeros((0, dim))

    def push(self, ids: list[str], emb: Tensor) -> None:
        """Append detached rows (fp32, CPU); an id already in the bank is replaced by its newer row."""
        if self.size <= 0 or not ids:
            return
        new = set(ids)
        keep = [j for j, pid in enumerate(self.ids) if pid not in new]
        self.ids = [self.ids[j] for j in keep] + list(ids)
        self.emb = torch.cat([self.emb[keep], emb.detach().float().cpu()])
        if len(self.ids) > self.size:
            self.ids, self.emb = self.ids[-self.size:], self.emb[-self.size:]

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({"emb": self.emb.contiguous()}, str(Path(folder) / BANK_FILE),
                  metadata={"ids": json.dumps(self.ids)})

    def load(self, folder: Path) -> None:
        from safetensors import safe_open

        path = Path(folder) / BANK_FILE
        if not path.exists():
            return
        with safe_open(str(path), "pt") as f:
            self.ids = json.loads(f.metadata()["ids"])
            self.emb = f.get_tensor("emb")


def random_passages(pool: list[str], n: int, seed: int, step: int) -> list[str]:
    """`n` distinct passage ids from `pool`, a function of (seed, step) only (same on every rank, on resume)."""
    if n <= 0 or not pool:
        return []
    return random.Random(f"random-negatives:{seed}:{step}").sample(pool, min(n, len(pool)))
