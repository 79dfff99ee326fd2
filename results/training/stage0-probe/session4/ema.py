"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with an exponential moving average of the
projections' weights (evaluated instead of the last iterate) and/or an L2 pull towards the pretrained q/k
(L2-SP). Spec per run: ema_decay,l2sp_weight (0 = off).
Usage: python results/training/stage0-probe/session4/ema.py 0.99,0 0.998,0 0,1e-2
"""
import sys

import numpy as np
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
torch.set_num_threads(2)
from pathlib import Path

from probe_stage0 import dev_inputs, model_scale, recall
from tqdm import tqdm

from harness.assets import cache_root
from harness.lm import load_lm
from harness.metrics import normalize_answer
from imprag import losses as L
from imprag.model import ImpRAGConfig, ImpRAGModel
from imprag.projection_warmup import features
from imprag.train import PRESETS, stage0_inputs, training_items
from tasks.corpora import load_corpus

cfg = dict(PRESETS["full"]); corpus = load_corpus(cfg["corpus"])
hay = [normalize_answer(t) for t in corpus.texts]; row = {p: j for j, p in enumerate(corpus.ids)}
dev = dev_inputs(cfg["tasks"], 100, cfg["train_fewshot"])
examples, items = training_items(cfg, corpus, Path(cfg["out"]))
prompts, pos = stage0_inputs(items)
hf, tok = load_lm(cfg["model"])
model = ImpRAGModel(hf, tok, ImpRAGConfig(b=8, t=20, l_max=64, k=3))
xq, xp = features(model, prompts, corpus.texts, 3, True, cache_root() / "imprag-stage0")
xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
P = [[row[p] for p in ps if p in row] for ps in pos]
a = model.runner.layer(8).self_attn
params = [*a.q_proj.parameters(), *a.k_proj.parameters()]
init = [p.detach().clone() for p in params]
scale = model_scale(model)
for spec in sys.argv[1:]:
    decay, l2sp = (float(x) for x in spec.split(","))
    with torch.no_grad():
        for p, p0 in zip(params, init):
            p.copy_(p0)
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0); order = []
    usable = [i for i, p in enumerate(P) if p]
    for step in tqdm(range(3000), mininterval=60):
        if len(order) < 64: order += [usable[j] for j in torch.randperm(len(usable), generator=gen).tolist()]
        idx, order = order[:64], order[64:]
        s = model.score(model.group_mean(a.q_proj(xq[idx])), a.k_proj(xp))
        pm = torch.zeros_like(s, dtype=torch.bool)
        for r, i in enumerate(idx): pm[r, P[i]] = True
        loss = L.multilabel_nce(s, pm, ~pm, scale=scale)
        if l2sp:
            loss = loss + l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, init))
        opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        if step + 1 in (1000, 1500, 2000, 3000):
            live = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, e in zip(params, ema if decay else live):
                    p.copy_(e)
            r = {t: recall(model, xdev[t], xp, gg, hay) for t, (_, gg) in dev.items()}
            with torch.no_grad():
                for p, v in zip(params, live):
                    p.copy_(v)
            print(spec, step + 1, round(loss.item(), 3), r, np.mean(list(r.values())), flush=True)
