"""One-off probe of session 4 (results in ../session4.csv). Stage 0 distilling MiniLM's score distribution over
its top 100 (softmax of cosines / tau) into the projections, optionally plus the NCE on the pseudo-positives.
Spec per run: tau,nce_weight,lr.
Usage: python results/training/stage0-probe/session4/kd.py 0.05,0,3e-3 0.05,1,3e-3
"""
import sys

import torch
from common import dev_recall, fit, nce, reset, setup

from baselines.retrievers.dense import DenseRetriever
from harness.assets import cache_root

s = setup()
by_id = {f"ret:{ex.id}": ex for ex in s.examples}
exs = [by_id[k] for k in sorted({it.id for it in s.items if it.kind == "retrieval"})]  # stage0_inputs' order
teacher = DenseRetriever(s.corpus, cache_root(), encoder="minilm")
t_scores, t_ids = teacher.index.search(teacher.encoder.encode([ex.queries.get("prompt", ex.prompt) for ex in exs]), 100)
t_cols, t_scores = torch.tensor([[s.row[p] for p in r] for r in t_ids]), torch.from_numpy(t_scores).float()


def run(spec: str) -> None:
    tau, w_nce, lr = (float(x) for x in spec.split(","))
    reset(s)

    def loss_fn(idx, scores, params):
        logp = torch.log_softmax(scores * s.scale, -1)
        loss = -(torch.softmax(t_scores[idx] / tau, -1) * logp.gather(1, t_cols[idx])).sum(-1).mean()
        return loss + w_nce * nce(s, idx, scores) if w_nce else loss

    for step, loss in fit(s, loss_fn, list(range(len(s.P))), lr=lr):
        print(spec, step, loss, *dev_recall(s), flush=True)


for spec in sys.argv[1:]:
    run(spec)
