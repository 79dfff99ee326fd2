# Diagnostic used for README.md: re-rank MiniLM top-30 of 30 seen-dev questions with ImpRAG scores (R@3), and embedding statistics.
# Usage: OMP_NUM_THREADS=1 python results/training/v1-joint-only/rerank_diag.py base runs/train/imprag-quick/checkpoint-warmup runs/train/imprag-quick/checkpoint
import json, sys, torch, numpy as np, random
torch.set_num_threads(1)
from harness.lm import load_lm
from harness.registry import TASKS
from harness.metrics import normalize_answer
from imprag.model import ImpRAGConfig, ImpRAGModel
from tasks.corpora import load_corpus
from baselines.retrievers.dense import DenseRetriever
from harness.assets import cache_root
c = load_corpus("minikilt")
exs = []
for t in ["nq", "hotpotqa"]:
    e = TASKS.get(t).load("minikilt", "dev"); exs += random.Random(0).sample(e, 15)
dr = DenseRetriever(c, cache_root())
pools = dr.search([e.prompt for e in exs], 30)
for name in sys.argv[1:]:
    hf, tok = load_lm(name if name != "base" else "smollm2-135m")
    m = ImpRAGModel(hf, tok, ImpRAGConfig(l_max=64, k=3))
    ids = sorted({p for pool in pools for p in pool})
    E = m.embed_passages([c[i].as_text() for i in ids], 32, True); col = {p: j for j, p in enumerate(ids)}
    Q = m.embed_queries([e.prompt for e in exs])
    hits = []; 
    for qi, (e, pool) in enumerate(zip(exs, pools)):
        s = E[[col[p] for p in pool]] @ Q[qi]
        top = [pool[j] for j in np.argsort(-s)[:3]]
        gs = [normalize_answer(g) for g in e.golds]
        hits.append(any(any(g and g in normalize_answer(c[p].as_text()) for g in gs) for p in top))
    En = E / np.linalg.norm(E, axis=1, keepdims=True)
    print(name, "rerank-top30 R@3", np.mean(hits), "mean pairwise cos", float((En @ En.T).mean()), "norm", float(np.linalg.norm(E,axis=1).mean()), flush=True)
