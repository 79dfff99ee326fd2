"""One-off probe of session 4 (results in ../session4.csv). Over-fitting check of the stage-0 linear fit:
label hit@5 (a pseudo-positive in the top 5) on fitted vs held-out training questions (300 held out), and
seen-dev recall@5, after 500/1,000/1,500 steps.
Usage: python results/training/stage0-probe/session4/diag.py
"""
import numpy as np
import torch
from common import dev_recall, setup

from imprag.projection_warmup import ProjectionWarmupConfig, fit_projections

s = setup()
perm = torch.randperm(len(s.P), generator=torch.Generator().manual_seed(1)).tolist()
hold = set(perm[:300])
p_fit = [([] if i in hold else p) for i, p in enumerate(s.P)]


def label_hit(idx: list[int]) -> float:
    with torch.no_grad():
        e_q = s.model.group_mean(s.attn.q_proj(s.xq[idx]))
        top = s.model.score(e_q, s.attn.k_proj(s.xp)).topk(5, dim=1).indices.tolist()
    return float(np.mean([bool(set(t) & set(s.P[i])) for t, i in zip(top, idx)]))


fit_idx, hold_idx = perm[300:900], sorted(hold)
print("init", label_hit(fit_idx), label_hit(hold_idx))
for seed in [500, 1000, 1500]:  # three 500-step fits in a row (fresh Adam each): 500, 1,000, 1,500 steps in all
    fit_projections(s.model, s.xq, s.xp, p_fit, ProjectionWarmupConfig(500, 3e-3, seed=seed), s.scale)
    print(seed, "train-labhit", label_hit(fit_idx), "heldout-labhit", label_hit(hold_idx), "dev", dev_recall(s)[0],
          flush=True)
