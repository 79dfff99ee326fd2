"""Diagnostic (not project code): recall@3 of the quick ImpRAG checkpoint on 100 seen-dev questions per task,
with raw query vectors vs query vectors centred by the mean E_q of 500 train prompts (hub-passage check).
Run from the repo root: .venv/bin/python results/training/v1-joint-only/center_diag.py"""
import numpy as np, torch
from pathlib import Path
from harness.registry import TASKS, SYSTEMS
from harness.system import RunContext
from harness.prompting import lm_input
from harness.metrics import recall_at_k
from harness.runner import select
from tasks.corpora import load_corpus
from harness.assets import cache_root
torch.set_num_threads(2)
corpus = load_corpus("minikilt")
opts = {"checkpoint": "runs/train/imprag-quick/checkpoint", "bf16": True, "k": 3}
demos = {t: TASKS.get(t).load("minikilt", "train")[:2] for t in ("nq", "hotpotqa")}
sysm = SYSTEMS.get("imprag")(opts); ctx = RunContext(opts, cache_root(), demos); sysm.prepare(corpus, ctx)
m = sysm.model
train = [lm_input(e, demos[e.task]) for t in ("nq", "hotpotqa") for e in TASKS.get(t).load("minikilt", "train")[2:252]]
qbar = m.embed_queries(train, k=3).mean(0, keepdims=True)
for t in ("nq", "hotpotqa"):
    ex = select(TASKS.get(t).load("minikilt", "dev"), 100, 0, t)
    q = m.embed_queries([lm_input(e, demos[t]) for e in ex], k=3)
    for name, qq in (("raw", q), ("centred", q - qbar)):
        _, ids = sysm.index.search(qq, 3)
        r = np.mean([recall_at_k(e.golds, [p.as_text() for p in corpus.get_many(i)], 3) for e, i in zip(ex, ids)])
        print(t, name, f"recall@3={100*r:.1f}", "distinct top1:", len({i[0] for i in ids}))
