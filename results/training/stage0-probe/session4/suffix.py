"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with a suffix appended to every indexed passage (its last token, whose key is E_p, is then the
suffix's), the text truncated to keep 64 tokens in all.
Usage: python results/training/stage0-probe/session4/suffix.py '\n\n' '\nThis passage is about'
"""
import sys

import numpy as np
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
torch.set_num_threads(2)
from probe_stage0 import dev_inputs, model_scale, recall, train_inputs
from tqdm import tqdm

from harness.assets import cache_root
from harness.lm import load_lm
from harness.metrics import normalize_answer
from imprag.model import ImpRAGConfig, ImpRAGModel, pad
from imprag.projection_warmup import ProjectionWarmupConfig, features, fit_projections
from imprag.train import PRESETS
from tasks.corpora import load_corpus

cfg = dict(PRESETS["full"]); corpus = load_corpus(cfg["corpus"])
hay = [normalize_answer(t) for t in corpus.texts]; row = {p: j for j, p in enumerate(corpus.ids)}
dev = dev_inputs(cfg["tasks"], 100, cfg["train_fewshot"])
hf, tok = load_lm(cfg["model"])
prompts, pos = train_inputs(cfg, corpus, "labels")
model = ImpRAGModel(hf, tok, ImpRAGConfig(b=8, t=20, l_max=64, k=3))
xq, _ = features(model, prompts, corpus.texts, 3, True, cache_root() / "imprag-stage0")
xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
P = [[row[p] for p in ps if p in row] for ps in pos]
a = model.runner.layer(8).self_attn
init = ({k: v.clone() for k, v in a.q_proj.state_dict().items()}, {k: v.clone() for k, v in a.k_proj.state_dict().items()})
toks = model.token_ids(corpus.texts)
for suffix in sys.argv[1:]:
    suf = model.token_ids([suffix.encode().decode("unicode_escape")])[0]
    seqs = [s[:64 - len(suf)] + suf for s in toks]
    print(suffix, suf, flush=True)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i])); out = torch.zeros(len(seqs), 576)
    with torch.no_grad():
        for s in tqdm(range(0, len(order), 64), mininterval=60):
            idx = order[s:s+64]; ids, mask = pad([seqs[i] for i in idx], model.pad_id, "right")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out[idx] = model.passage_features(ids, mask).float()
    a.q_proj.load_state_dict(init[0]); a.k_proj.load_state_dict(init[1])
    r = {t: recall(model, xdev[t], out, gg, hay) for t, (_, gg) in dev.items()}
    print(suffix, 0, r, np.mean(list(r.values())), flush=True)
    done = 0
    for s in [1500, 1500]:
        fit_projections(model, xq, out, P, ProjectionWarmupConfig(s, 3e-3, seed=done), model_scale(model)); done += s
        r = {t: recall(model, xdev[t], out, gg, hay) for t, (_, gg) in dev.items()}
        print(suffix, done, r, np.mean(list(r.values())), flush=True)
