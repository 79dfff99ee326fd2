"""Shared setup of the session-4 one-off stage-0 probes (run from the repository root once the `full` preset's
stage-0 features are cached): the preset's corpus, training prompts and pseudo-positives, the seen-dev prompts,
SmolLM2 split at b = 8, and the cached layer-8 features (imprag.projection_warmup.features)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[4]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np
import torch


def setup() -> SimpleNamespace:
    """Everything the probes share; `init` holds layer 8's pretrained q_proj/k_proj to reset between fits."""
    from probe_stage0 import dev_inputs, model_scale

    from harness.assets import cache_root
    from harness.lm import load_lm
    from harness.metrics import normalize_answer
    from imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag.projection_warmup import features
    from imprag.train import PRESETS, stage0_inputs, training_items
    from tasks.corpora import load_corpus

    torch.set_num_threads(2)
    cfg = dict(PRESETS["full"])
    corpus = load_corpus(cfg["corpus"])
    row = {p: j for j, p in enumerate(corpus.ids)}
    dev = dev_inputs(cfg["tasks"], 100, cfg["train_fewshot"])
    examples, items = training_items(cfg, corpus, Path(cfg["out"]))
    prompts, pos = stage0_inputs(items)
    hf, tok = load_lm(cfg["model"])
    model = ImpRAGModel(hf, tok, ImpRAGConfig(b=8, t=20, l_max=64, k=3))
    xq, xp = features(model, prompts, corpus.texts, 3, True, cache_root() / "imprag-stage0")
    xdev = {t: torch.from_numpy(model.embed_queries(ps, 32, k=5, bf16=True, features=True)) for t, (ps, _) in dev.items()}
    attn = model.runner.layer(8).self_attn
    init = ({k: v.clone() for k, v in attn.q_proj.state_dict().items()},
            {k: v.clone() for k, v in attn.k_proj.state_dict().items()})
    return SimpleNamespace(cfg=cfg, corpus=corpus, row=row, dev=dev, examples=examples, items=items, prompts=prompts,
                           model=model, xq=xq, xp=xp, xdev=xdev, attn=attn, init=init, scale=model_scale(model),
                           P=[[row[p] for p in ps if p in row] for ps in pos],
                           hay=[normalize_answer(t) for t in corpus.texts])


def reset(s: SimpleNamespace) -> None:
    """Layer 8's q_proj/k_proj back to the pretrained weights."""
    s.attn.q_proj.load_state_dict(s.init[0])
    s.attn.k_proj.load_state_dict(s.init[1])


def dev_recall(s: SimpleNamespace, xp: torch.Tensor | None = None) -> tuple[dict, float]:
    """Seen-dev recall@5 per task of the current projections (passage features `xp`, default the cached ones)."""
    from probe_stage0 import recall

    r = {t: recall(s.model, s.xdev[t], s.xp if xp is None else xp, g, s.hay) for t, (_, g) in s.dev.items()}
    return r, float(np.mean(list(r.values())))


def nce(s: SimpleNamespace, idx: list[int], scores: torch.Tensor) -> torch.Tensor:
    """Eq. 3 over the whole corpus with the pseudo-positives of queries `idx` (as fit_projections)."""
    from imprag.losses import corpus_nce

    return corpus_nce(scores, [s.P[i] for i in idx], scale=s.scale)


def fit(s: SimpleNamespace, loss_fn, usable: list[int], lr: float = 3e-3, steps: int = 3000,
        report=(1000, 2000, 3000), on_step=None):
    """fit_projections' loop (batches of 64 of `usable`, seed 0, AdamW) with another loss
    `loss_fn(idx, scores, params)`; `on_step(params)` after each update; yields (step, loss) at `report`."""
    from tqdm import tqdm

    params = [*s.attn.q_proj.parameters(), *s.attn.k_proj.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen, order = torch.Generator().manual_seed(0), []
    for step in tqdm(range(steps), mininterval=60):
        if len(order) < 64:
            order += [usable[j] for j in torch.randperm(len(usable), generator=gen).tolist()]
        idx, order = order[:64], order[64:]
        scores = s.model.score(s.model.group_mean(s.attn.q_proj(s.xq[idx])), s.attn.k_proj(s.xp))
        loss = loss_fn(idx, scores, params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(params)
        if step + 1 in report:
            yield step + 1, round(loss.item(), 3)
