"""Stage 0 / refit on a CPU budget (not in the paper), the method-independent part: fit a retriever's
layer-b q_proj/k_proj on frozen features with multi-label NCE (paper Eq. 3) against the *whole corpus*.

Both LM-layer retrievers (ImpRAG's layers 0..b and RA-DIT-Llama's separate copy of them) score
E_q . E_p = pool(W_q x_q) . (W_k x_p), with x layer b's normalised input at the last token and `pool` the
GQA group mean. With the layers below frozen, x for every training prompt and corpus passage is computed
once (a method's own feature extraction, cached here by a key of everything it depends on), and then only
W_q and W_k are trained, each query against every corpus passage (`losses.corpus_nce`), in well under a
minute per thousand steps. Small training batches never show the retriever the passages raw q.k favours
for every query; this fit does (docs/cpu-training.md). The fitted projections go to
`<work>/projection-warmup.safetensors`; a rerun with that file loads it instead of fitting again.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from imprag_bench.harness.training import losses as L

FIT_FILE = "projection-warmup.safetensors"
LOG_FILE = "projection-warmup-log.jsonl"


@dataclass
class ProjectionFitConfig:
    """Stage-0 / refit settings; `steps` 0 switches the fit off (the paper's recipe)."""

    steps: int = 0
    lr: float = 3e-3  # the projections alone: a linear model, so a large step is stable (measured 1e-3/3e-3)
    batch_size: int = 64  # queries per step; every corpus passage is a negative of each
    seed: int = 0
    bf16: bool = True  # autocast for the feature pass only; the fit runs in fp32
    cosine: bool = False  # cosine lr decay to 0 over the steps (constant lr otherwise; dev recall oscillates
    # along a constant-lr fit, docs/cpu-training.md)


def fit_inputs(items: list) -> tuple[list[str], list[list[str]]]:
    """(prompts, positive passage ids) of the retrieval items, one per question in id order: independent of
    the mix order, so presets (and systems) share the cached features."""
    first = {it.id: it for it in items if it.kind == "retrieval"}
    ret = [first[k] for k in sorted(first)]
    return [it.prompt for it in ret], [list(it.candidates.positives) for it in ret]


def weights_sum(module: torch.nn.Module) -> float:
    """A cheap fingerprint of a model's current weights (part of the feature cache key)."""
    return float(sum(p.detach().double().sum() for p in module.parameters()))


def cached_features(key_parts: list, compute: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                    cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(query features, passage features) from `cache_dir/features-<key>.pt`, the key a hash of `key_parts`
    (everything the features depend on); computed by `compute()` and saved atomically on a miss."""
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()
    cache = None if cache_dir is None else Path(cache_dir) / f"features-{key[:20]}.pt"
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key:
            return saved["q"], saved["p"]
    xq, xp = compute()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        torch.save({"key": key, "q": xq, "p": xp}, tmp)
        tmp.replace(cache)
    return xq, xp


def fit_projections(q_proj: torch.nn.Module, k_proj: torch.nn.Module, pool: Callable, xq: torch.Tensor,
                    xp: torch.Tensor, positives: list[list[int]], cfg: ProjectionFitConfig,
                    scale: float) -> list[dict]:
    """Train q_proj/k_proj in place with multi-label NCE over all passages (rows of `xp`): score =
    pool(q_proj(xq)) . k_proj(xp); `positives[i]` are the passage rows of query i (queries without positives
    are skipped). Returns the loss log."""
    params = [*q_proj.parameters(), *k_proj.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps)) if cfg.cosine else None
    usable = [i for i, p in enumerate(positives) if p]
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = next(q_proj.parameters()).device
    xq, xp = xq.to(dev), xp.to(dev)
    logs, order = [], []
    for step in tqdm(range(cfg.steps), desc="stage-0 projection fit", unit="step"):
        if len(order) < cfg.batch_size:
            order += [usable[j] for j in torch.randperm(len(usable), generator=gen).tolist()]
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        scores = pool(q_proj(xq[idx])) @ k_proj(xp).transpose(0, 1)
        loss = L.corpus_nce(scores, [positives[i] for i in idx], scale=scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        logs.append({"step": step + 1, "loss": round(loss.item(), 5)})
    opt.zero_grad(set_to_none=True)  # no stale gradient reaches the training that follows
    return logs


def load_projections(q_proj: torch.nn.Module, k_proj: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    q_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("q.")})
    k_proj.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("k.")})


def save_projections(q_proj: torch.nn.Module, k_proj: torch.nn.Module, path: Path) -> None:
    """q_proj's and k_proj's tensors (prefixed q. / k.) to `path`, written atomically."""
    from safetensors.torch import save_file

    state = {**{f"q.{k}": v.detach().contiguous() for k, v in q_proj.state_dict().items()},
             **{f"k.{k}": v.detach().contiguous() for k, v in k_proj.state_dict().items()}}
    tmp = path.with_name(path.stem + ".tmp.safetensors")
    save_file(state, str(tmp))
    tmp.replace(path)


def run_fit(q_proj: torch.nn.Module, k_proj: torch.nn.Module, pool: Callable,
            features: Callable[[], tuple[torch.Tensor, torch.Tensor]], positive_ids: list[list[str]],
            corpus_ids: list[str], cfg: ProjectionFitConfig, out: Path, scale: float) -> None:
    """The fit end to end, idempotent: loads `<out>/projection-warmup.safetensors` if it exists, else gets
    the features (`features()`: queries in `positive_ids` order, passages in `corpus_ids` order), fits, and
    saves the projections and `<out>/projection-warmup-log.jsonl`."""
    if cfg.steps <= 0:
        return
    done = Path(out) / FIT_FILE
    if done.exists():
        load_projections(q_proj, k_proj, done)
        return
    xq, xp = features()
    row = {pid: j for j, pid in enumerate(corpus_ids)}
    logs = fit_projections(q_proj, k_proj, pool, xq, xp, [[row[p] for p in ps if p in row] for ps in positive_ids],
                           cfg, scale)
    (Path(out) / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in logs))
    save_projections(q_proj, k_proj, done)
