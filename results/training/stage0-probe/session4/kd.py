"""One-off probe of session 4 (results in ../session4.csv). Stage 0 distilling MiniLM's score distribution over its top 100 (softmax of cosines / tau) into the
projections, optionally plus the NCE on the pseudo-positives. Spec per run: tau,nce_weight,lr.
Usage: python results/training/stage0-probe/session4/kd.py 0.05,0,3e-3 0.05,1,3e-3
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

from baselines.retrievers.dense import DenseRetriever
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
by_id = {f"ret:{ex.id}": ex for ex in examples}
exs = [by_id[k] for k in sorted({it.id for it in items if it.kind == "retrieval"})]
dr = DenseRetriever(corpus, cache_root(), encoder="minilm")
K = 100
ts, tids = dr.index.search(dr.encoder.encode([ex.queries.get("prompt", ex.prompt) for ex in exs]), K)
tcols = torch.tensor([[row[p] for p in r] for r in tids]); tsc = torch.from_numpy(ts).float()
hf, tok = load_lm(cfg["model"])
model = ImpRAGModel(hf, tok, ImpRAGConfig(b=8, t=20, l_max=64, k=3))
xq, xp = features(model, prompts, corpus.texts, 3, True, cache_root() / "imprag-stage0")
xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
P = [[row[p] for p in ps if p in row] for ps in pos]
a = model.runner.layer(8).self_attn
init = ({k: v.clone() for k, v in a.q_proj.state_dict().items()}, {k: v.clone() for k, v in a.k_proj.state_dict().items()})
scale = model_scale(model)
for spec in sys.argv[1:]:
    tau, w_nce, lr = (float(x) for x in spec.split(","))
    a.q_proj.load_state_dict(init[0]); a.k_proj.load_state_dict(init[1])
    params = [*a.q_proj.parameters(), *a.k_proj.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0); order = []
    usable = list(range(len(P)))
    for step in tqdm(range(3000), mininterval=60):
        if len(order) < 64: order += torch.randperm(len(usable), generator=gen).tolist()
        idx, order = order[:64], order[64:]
        s = model.score(model.group_mean(a.q_proj(xq[idx])), a.k_proj(xp))
        logp = torch.log_softmax(s * scale, -1)
        pt = torch.softmax(tsc[idx] / tau, -1)
        loss = -(pt * logp.gather(1, tcols[idx])).sum(-1).mean()
        if w_nce:
            pm = torch.zeros_like(s, dtype=torch.bool)
            for r, i in enumerate(idx): pm[r, P[i]] = True
            loss = loss + w_nce * L.multilabel_nce(s, pm, ~pm, scale=scale)
        opt.zero_grad(); loss.backward(); opt.step()
        if step + 1 in (1000, 2000, 3000):
            r = {t: recall(model, xdev[t], xp, gg, hay) for t, (_, gg) in dev.items()}
            print(spec, step + 1, round(loss.item(), 3), r, np.mean(list(r.values())), flush=True)
