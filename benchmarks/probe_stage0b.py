"""Stage-0b retrieval probe: seen-dev recall@5 along a fit of layer b-1 + layer b's q/k (imprag_bench.imprag.layer_fit),
straight from cached layer inputs, without an index.

Why: stage 0b is the next capacity after stage 0's linear fit; this measures whether (and after how many
steps) it raises retrieval before a full training run is spent on it. It starts from the `full` preset's
stage-0 projections (`--init`, default runs/train/imprag-full/projection-warmup.safetensors) or from a fresh
stage-0 fit of `--stage0-steps`.

Usage: python benchmarks/probe_stage0b.py [--steps 600] [--lr 1e-4] [--proj-lr 1e-3] [--fresh 256]
       [--refresh-every 100] [--n 100] [--json out.json]
The layer inputs of the corpus (~1 GB bf16) are computed once (~3 min on 2 threads) and cached under
~/.cache/imprag-bench/imprag-stage0b.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from probe_stage0 import answer_recall, dev_inputs, model_scale, train_inputs


def cached_inputs(model, seqs, side, offset, name: str, key: list):
    """imprag_bench.imprag.layer_fit.layer_inputs, cached on disk under a digest of `key`."""
    import hashlib

    from imprag_bench.harness.assets import cache_root
    from imprag_bench.imprag.layer_fit import LayerInputs, layer_inputs

    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    path = cache_root() / "imprag-stage0b" / f"{name}-{digest}.pt"
    if path.exists():
        return LayerInputs(**torch.load(path, weights_only=True))
    x = layer_inputs(model, seqs, side, offset, desc=f"{name} layer inputs")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"h": x.h, "mask": x.mask, "pos": x.pos}, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--proj-lr", type=float, default=1e-3)
    ap.add_argument("--fresh", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--refresh-every", type=int, default=100)
    ap.add_argument("--init", default="runs/train/imprag-full/projection-warmup.safetensors")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from safetensors.torch import load_file

    from imprag_bench.harness.lm import load_lm
    from imprag_bench.harness.metrics import normalize_answer
    from imprag_bench.imprag.layer_fit import (
        LayerFitConfig,
        embed_all,
        fit_layer,
        passage_embeddings,
        query_embeddings,
    )
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag_bench.imprag.train import PRESETS
    from imprag_bench.tasks.corpora import load_corpus

    cfg = dict(PRESETS["full"])
    corpus = load_corpus(cfg["corpus"])
    hay = [normalize_answer(t) for t in corpus.texts]
    row = {pid: j for j, pid in enumerate(corpus.ids)}
    dev = dev_inputs(cfg["tasks"], a.n, cfg["train_fewshot"])
    hf, tok = load_lm(cfg["model"])
    prompts, pos_ids = train_inputs(cfg, corpus, "labels")
    b = 8
    model = ImpRAGModel(hf, tok, ImpRAGConfig(b=b, t=20, l_max=cfg["l_max"], k=cfg["query_k"]))
    attn = model.runner.layer(b).self_attn
    state = load_file(a.init)
    attn.q_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("q.")})
    attn.k_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("k.")})
    base = [cfg["model"], b, cfg["l_max"]]
    xp = cached_inputs(model, model.index_tokens(corpus.texts), "right", 0, "corpus", base + [corpus.ids])
    xq = cached_inputs(model, model.token_ids(prompts), "left", cfg["query_k"] * cfg["l_max"], "train", base + [prompts])
    xdev = {t: cached_inputs(model, model.token_ids(ps), "left", 5 * cfg["l_max"], f"dev-{t}", base + [ps])
            for t, (ps, _) in dev.items()}
    rows, t0 = [], time.time()

    def probe(step: int) -> None:
        e_p = embed_all(model, xp, passage_embeddings)
        r = {t: answer_recall(embed_all(model, x, query_embeddings) @ e_p.T, dev[t][1], hay) for t, x in xdev.items()}
        rows.append({"step": step, **r, "seen": float(np.mean(list(r.values()))), "lr": a.lr, "proj_lr": a.proj_lr,
                     "fresh": a.fresh, "elapsed_s": round(time.time() - t0, 1)})
        print(rows[-1], flush=True)

    fit_cfg = LayerFitConfig(a.steps, a.lr, a.proj_lr, a.batch_size, a.fresh, a.refresh_every)
    logs = fit_layer(model, xq, xp, [[row[p] for p in ps if p in row] for ps in pos_ids], fit_cfg,
                     model_scale(model), callback=probe)
    for r in rows:
        r["train_loss"] = float(np.mean([g["loss"] for g in logs[max(0, r["step"] - 20):r["step"]]] or [np.nan]))
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
