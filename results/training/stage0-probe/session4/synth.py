"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with 13,552 synthetic retrieval queries "Q: What is <title>? A:" (each passage its own positive,
the seen tasks' 2-shot demonstrations in front) added to the 3,182 training questions.
Usage: python results/training/stage0-probe/session4/synth.py synth base
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
# demos prefixes: everything before the last "Q:" of a dev prompt of each task
pref = [dev["nq"][0][0].rsplit("Q:", 1)[0], dev["hotpotqa"][0][0].rsplit("Q:", 1)[0]]
titles = [t.split("\n", 1)[0] for t in corpus.texts]
sp = [f"{pref[j % 2]}Q: What is {ti}? A:" for j, ti in enumerate(titles)]
print(sp[:2])
xs = torch.from_numpy(model.embed_queries(sp, 32, k=3, bf16=True, features=True))
xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
P = [[row[p] for p in ps if p in row] for ps in pos]
a = model.runner.layer(8).self_attn
init = ({k: v.clone() for k, v in a.q_proj.state_dict().items()}, {k: v.clone() for k, v in a.k_proj.state_dict().items()})
for mode in sys.argv[1:]:
    a.q_proj.load_state_dict(init[0]); a.k_proj.load_state_dict(init[1])
    if mode == "base": X, PP = xq, P
    elif mode == "synth": X, PP = torch.cat([xq, xs]), P + [[j] for j in range(len(sp))]
    elif mode == "synth-half": 
        keep = list(range(0, len(sp), 3)); X, PP = torch.cat([xq, xs[keep]]), P + [[j] for j in keep]
    done = 0
    for s in [1500, 1500, 3000]:
        fit_projections(model, X, xp, PP, ProjectionWarmupConfig(s, 3e-3, seed=done), model_scale(model)); done += s
        r = {t: recall(model, xdev[t], xp, gg, hay) for t, (_, gg) in dev.items()}
        print(mode, done, r, np.mean(list(r.values())), flush=True)
