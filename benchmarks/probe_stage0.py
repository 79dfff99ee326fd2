"""Stage-0 retrieval probe: seen-dev recall@5 of layer-b q_proj/k_proj fits, without building an index.

Why: a checkpoint's recall normally costs an index build (~3 min) plus a run. Stage 0 (imprag_bench.imprag.projection_warmup)
works on cached layer-b features, so its retrieval can be scored straight from them: dev prompts' features x
the whole corpus's features through the fitted projections, top-5, answer-substring test (imprag_bench.harness.metrics).
This compares stage-0 settings (layer b, positives, steps, lr) in minutes.

Usage: python benchmarks/probe_stage0.py [--b 8 12] [--positives labels labels1 answers50] [--l-max 128] [--steps 1500]
       [--lr 3e-3] [--n 100] [--json out.json]
The first run of a layer computes its features (~4 min per layer-8 pass on 2 threads; cached under
~/.cache/imprag-bench/imprag-stage0). The prompts and labels are the `full` preset's (imprag_bench.imprag.train.run).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch


def train_inputs(cfg: dict, corpus, positives: str):
    """(prompts, positive passage ids) of the preset's retrieval items, as imprag_bench.imprag.train.run builds them; with
    `labels1` only the first; with `answers50` every passage of MiniLM's top 50 that contains a gold answer."""
    from imprag_bench.imprag.train import stage0_inputs, training_items

    examples, items = training_items(cfg, corpus, Path(cfg["out"]))
    prompts, pos = stage0_inputs(items)
    if positives == "labels1":
        pos = [p[:1] for p in pos]
    if positives == "answers50":
        from imprag_bench.baselines.retrievers.dense import DenseRetriever
        from imprag_bench.harness.assets import cache_root
        from imprag_bench.harness.metrics import contains_answer

        by_id = {f"ret:{ex.id}": ex for ex in examples}
        exs = [by_id[k] for k in sorted({it.id for it in items if it.kind == "retrieval"})]
        ranked = DenseRetriever(corpus, cache_root(), encoder="minilm").search(
            [ex.queries.get("prompt", ex.prompt) for ex in exs], 50)
        texts = lambda ids: (p.as_text() for p in corpus.get_many(list(ids)))  # noqa: E731
        pos = [[p for p, t in zip(ids, texts(ids)) if contains_answer(ex.golds, t)] or old
               for ex, ids, old in zip(exs, ranked, pos)]
    return prompts, pos


def dev_inputs(tasks: list[str], n: int, fewshot: int):
    """Per task: the runner's seeded dev selection as prompts (with its demonstrations) and golds."""
    from imprag_bench.harness.prompting import lm_input
    from imprag_bench.harness.registry import TASKS
    from imprag_bench.harness.runner import load_demos, select

    out = {}
    for t in tasks:
        spec = TASKS.get(t)
        demos = load_demos(spec, "minikilt", {"fewshot": fewshot})
        exs = select(spec.load("minikilt", "dev"), n, 0, t)
        out[t] = ([lm_input(ex, demos) for ex in exs], [ex.golds for ex in exs])
    return out


def recall(model, xq: torch.Tensor, xp: torch.Tensor, golds: list, hay: list[str], k: int = 5) -> float:
    """Answer-in-top-k rate of the current projections (imprag_bench.harness.metrics' normalised substring test)."""
    q_proj, k_proj = model.runner.layer(model.b).self_attn.q_proj, model.runner.layer(model.b).self_attn.k_proj
    with torch.no_grad():
        return answer_recall(model.score(model.group_mean(q_proj(xq)), k_proj(xp)), golds, hay, k)


def answer_recall(scores: torch.Tensor, golds: list, hay: list[str], k: int = 5) -> float:
    """Share of queries (rows of `scores` over the corpus) with a normalised gold answer in a top-k passage."""
    from imprag_bench.harness.metrics import normalize_answer

    top = scores.topk(k, dim=1).indices.tolist()
    needles = [[n for n in map(normalize_answer, g) if n] for g in golds]
    return float(np.mean([any(n in hay[j] for j in row for n in ns) for row, ns in zip(top, needles)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--b", type=int, nargs="+", default=[8])
    ap.add_argument("--positives", nargs="+", default=["labels"], choices=["labels", "labels1", "answers50"])
    ap.add_argument("--steps", type=int, nargs="+", default=[1500])
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    ap.add_argument("--cosine", action="store_true", help="cosine lr decay over each fit")
    ap.add_argument("--l-max", type=int, default=None, help="passage tokens (default: the full preset's)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from imprag_bench.harness.assets import cache_root
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.harness.metrics import normalize_answer
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag_bench.imprag.projection_warmup import ProjectionWarmupConfig, features, fit_projections
    from imprag_bench.imprag.train import PRESETS
    from imprag_bench.tasks.corpora import load_corpus

    cfg = dict(PRESETS["full"])
    cfg["l_max"] = a.l_max or cfg["l_max"]
    corpus = load_corpus(cfg["corpus"])
    hay = [normalize_answer(t) for t in corpus.texts]
    row = {pid: j for j, pid in enumerate(corpus.ids)}
    dev = dev_inputs(cfg["tasks"], a.n, cfg["train_fewshot"])
    hf, tok = load_lm(cfg["model"])
    labels = {p: train_inputs(cfg, corpus, p) for p in a.positives}
    prompts = next(iter(labels.values()))[0]
    rows = []
    for b in a.b:
        model = ImpRAGModel(hf, tok, ImpRAGConfig(b=b, t=max(b, 20), l_max=cfg["l_max"], k=cfg["query_k"]))
        xq, xp = features(model, prompts, corpus.texts, cfg["query_k"], True, cache_root() / "imprag-stage0")
        xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
        attn = model.runner.layer(b).self_attn
        init = (copy.deepcopy(attn.q_proj.state_dict()), copy.deepcopy(attn.k_proj.state_dict()))
        base = {t: recall(model, xdev[t], xp, g, hay) for t, (_, g) in dev.items()}
        rows.append({"b": b, "l_max": cfg["l_max"], "positives": "-", "steps": 0, "lr": 0, **base,
                     "seen": float(np.mean(list(base.values()))), "fit_s": 0.0})
        print(rows[-1], flush=True)
        for pos_kind, steps, lr in itertools.product(a.positives, a.steps, a.lr):
            attn.q_proj.load_state_dict(init[0])
            attn.k_proj.load_state_dict(init[1])
            positives = [[row[p] for p in ps if p in row] for ps in labels[pos_kind][1]]
            t0 = time.time()
            fit_projections(model, xq, xp, positives, ProjectionWarmupConfig(steps, lr, cosine=a.cosine), model_scale(model))
            r = {t: recall(model, xdev[t], xp, g, hay) for t, (_, g) in dev.items()}
            rows.append({"b": b, "l_max": cfg["l_max"], "positives": pos_kind, "steps": steps, "lr": lr,
                         "cosine": a.cosine, **r,
                         "seen": float(np.mean(list(r.values()))), "fit_s": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
        attn.q_proj.load_state_dict(init[0])
        attn.k_proj.load_state_dict(init[1])
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


def model_scale(model) -> float:
    """The objective's score scale: 1/sqrt(head_dim) (imprag_bench.imprag.objective's default)."""
    return model.runner.head_dim ** -0.5


if __name__ == "__main__":
    main()
