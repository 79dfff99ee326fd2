"""One-off probe of session 4 (results in ../session4.csv). Overfitting check of the stage-0 linear fit: label hit@5 (a pseudo-positive in the top 5) on fitted vs
held-out training questions (300 held out), and seen-dev recall@5, after 500/1,000/1,500 steps.
Usage (repository root, after the full preset's stage-0 features are cached): python results/training/stage0-probe/session4/diag.py
"""
import sys

import numpy as np
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
torch.set_num_threads(2)
from probe_stage0 import dev_inputs, model_scale, recall, train_inputs

from harness.assets import cache_root
from harness.lm import load_lm
from harness.metrics import normalize_answer
from imprag.model import ImpRAGConfig, ImpRAGModel
from imprag.projection_warmup import ProjectionWarmupConfig, features, fit_projections
from imprag.train import PRESETS
from tasks.corpora import load_corpus

cfg = dict(PRESETS["full"]); corpus = load_corpus(cfg["corpus"])
hay = [normalize_answer(t) for t in corpus.texts]; row = {p: j for j, p in enumerate(corpus.ids)}
dev = dev_inputs(cfg["tasks"], 100, cfg["train_fewshot"])
hf, tok = load_lm(cfg["model"])
prompts, pos = train_inputs(cfg, corpus, "labels")
model = ImpRAGModel(hf, tok, ImpRAGConfig(b=8, t=20, l_max=64, k=3))
xq, xp = features(model, prompts, corpus.texts, 3, True, cache_root() / "imprag-stage0")
print("prompt lens", np.percentile([len(x) for x in model.token_ids(prompts)], [50, 90, 100]))
xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
P = [[row[p] for p in ps if p in row] for ps in pos]
g = torch.Generator().manual_seed(1); perm = torch.randperm(len(P), generator=g).tolist()
hold = set(perm[:300])
Pfit = [([] if i in hold else p) for i, p in enumerate(P)]
def labhit(idx):
    a = model.runner.layer(8).self_attn
    with torch.no_grad():
        top = model.score(model.group_mean(a.q_proj(xq[idx])), a.k_proj(xp)).topk(5, dim=1).indices.tolist()
    return np.mean([bool(set(t) & set(P[i])) for t, i in zip(top, idx)])
fitidx = [i for i in perm[300:900]]; holdidx = sorted(hold)
print("init", labhit(fitidx), labhit(holdidx))
for s in [500, 1000, 1500]:
    fit_projections(model, xq, xp, Pfit, ProjectionWarmupConfig(500, 3e-3, seed=s), model_scale(model))
    r = {t: recall(model, xdev[t], xp, gg, hay) for t, (_, gg) in dev.items()}
    print(s, "train-labhit", labhit(fitidx), "heldout-labhit", labhit(holdidx), "dev", r, flush=True)
