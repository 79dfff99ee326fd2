"""The training loop shared by ImpRAG and the trained explicit-query baselines.

An `Objective` owns the model and turns a batch of TrainItems into named losses; this loop owns what is
common: seeded batch order, AdamW with linear warm-up/decay, gradient clipping, data parallelism, progress
and loss logging, and checkpoints that let an interrupted run resume and end exactly where an
uninterrupted run ends.

Data parallelism: launch with `torchrun --nproc_per_node N` (gloo on CPU, nccl on GPU). The objective's module
is wrapped by `harness.training.engine` (FSDP2 by default, DDP as an option), which reduces the gradients.
A step is `batch_size` items (global, whatever the world size) in micro-batches of `micro_batch` per rank:
global micro-batch j is items [j*m*W, (j+1)*m*W) of the step's batch, rank r takes its r-th slice of m, and
the objectives normalise their losses over the global micro-batch (`engine.global_mean`), so W ranks with
micro-batch m train exactly as one process with micro-batch m*W. Objectives that use in-batch negatives gather
candidate embeddings across ranks with `gather_candidates` (differentiable).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from imprag_bench.harness import dist as dist_env
from imprag_bench.harness.assets import log
from imprag_bench.harness.io import atomic_write_text
from imprag_bench.harness.training import engine


@dataclass
class TrainConfig:
    """Optimisation settings. `steps` is the total number of optimiser steps (the schedule's length)."""

    out: str
    steps: int
    batch_size: int = 8  # global batch (split across ranks)
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lr_warmup: float = 0.05  # share of steps with linear lr warm-up
    seed: int = 0
    ckpt_every: int = 50
    stop_after: int | None = None  # end this process after that many steps (tests / time-boxed sessions)
    micro_batch: int | None = None  # at most this many items per rank and forward; None: the rank's whole share
    strategy: str = "auto"  # harness.training.engine: auto (fsdp under torchrun), fsdp, ddp, none
    checkpointing: bool = False  # activation checkpointing of every decoder layer
    fsdp_bf16: bool = False  # FSDP2 mixed precision: bf16 compute weights, fp32 gradient reduction


class Objective(Protocol):
    """What a trainable method provides to the loop."""

    fsdp_units: str  # "layer": one FSDP2 unit per decoder layer (equal layer calls on every rank); "model": one

    def module(self) -> torch.nn.Module: ...  # what the optimiser trains (wrapped by harness.training.engine)
    # optional: def lr_scales(self) -> dict[int, float]: id(parameter) -> multiplier of the lr (default 1)
    # optional: device (where the module lives; DDP's device_ids)
    def losses(self, batch: list, step: int, total_steps: int) -> dict[str, torch.Tensor]: ...
    def save(self, folder: Path, state: dict | None = None) -> None: ...  # the export; `state`: full state dict


def world() -> tuple[int, int]:
    """(rank, world size) as harness.dist reads them from torchrun's environment; under torchrun the default
    process group (NCCL on GPUs, gloo on CPU) is started here, with a second group for the candidate gathers."""
    global _GATHER_GROUP
    rank, size = dist_env.rank_world()
    if size > 1:
        dist_env.start()
    if size > 1 and _GATHER_GROUP is None:
        _GATHER_GROUP = dist.new_group()
    return rank, size


_GATHER_GROUP = None  # in-batch candidate gathers run in backward too: on their own group, never interleaved
# with DDP's or FSDP2's gradient collectives on the default one


def gather_candidates(ids: list[str], emb: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """All ranks' (passage ids, embeddings [n_r, d]) concatenated in rank order; the counts may differ per
    rank (padded for the all-gather, then cut), and a rank without candidates passes a [0, 0] tensor.
    Differentiable (torch.distributed.nn): a loss on any rank sends its gradient back to the rank whose
    passages it scores, so the averaged gradient is the global batch's. Its backward is a collective too:
    every rank's loss must depend on the result (a rank with nothing to score adds 0 * result.sum())."""
    rank, size = world()
    if size == 1:
        return list(ids), emb
    from torch.distributed.nn.functional import all_gather

    meta: list = [None] * size
    # the width even of an empty [0, d] part (lockstep ranks with nothing to score pass one; a [0, 0] has none)
    dist.all_gather_object(meta, (list(ids), int(emb.shape[1]) if emb.ndim == 2 else 0))
    n_max = max(1, max(len(x) for x, _ in meta))
    d = max(1, max(dim for _, dim in meta))
    if emb.shape[1] != d:
        emb = emb.new_zeros((0, d))
    padded = torch.cat([emb, emb.new_zeros((n_max - emb.shape[0], d))])
    if torch.is_grad_enabled() and not padded.requires_grad:
        padded.requires_grad_(True)  # so that this rank's backward joins the others' (see above)
    with warnings.catch_warnings():  # its successor (funcol) backpropagates with reduce_scatter, which gloo lacks
        warnings.simplefilter("ignore", FutureWarning)
        full = all_gather(padded, group=_GATHER_GROUP)
    return [pid for x, _ in meta for pid in x], torch.cat([full[r][:len(meta[r][0])] for r in range(size)])


def global_mean(total: torch.Tensor, count: int | float) -> torch.Tensor:
    """`total / count` with `count` summed over the ranks' parts of this micro-batch (one scalar all-reduce),
    times the world size: the engines average the ranks' gradients, so the result is the gradient of the
    global micro-batch's mean, as one process reading it whole would compute."""
    rank, size = world()
    if size == 1:
        return total / max(1.0, float(count))
    c = torch.tensor([float(count)], dtype=torch.float64)
    dist.all_reduce(c, group=_GATHER_GROUP)
    return total * size / max(1.0, float(c.item()))


def batch_indices(n_items: int, step: int, batch_size: int, seed: int) -> list[int]:
    """The global batch of a step: consecutive slices of a seeded permutation per epoch."""
    per_epoch = max(1, n_items // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n_items)
    return perm[pos * batch_size:(pos + 1) * batch_size].tolist()


def param_groups(params: list, scales: dict[int, float], cfg: TrainConfig) -> list[dict]:
    """AdamW groups: weight decay on matrices only, and one group per lr multiplier (`scales`, keyed by
    id(parameter)); empty groups are dropped so the optimizer state of a run is stable across resumes."""
    groups: dict[tuple[bool, float], list] = {}
    for p in params:
        groups.setdefault((p.ndim >= 2, float(scales.get(id(p), 1.0))), []).append(p)
    return [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": cfg.lr * scale}
            for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))]


def _lr_lambda(cfg: TrainConfig):
    warm = max(1, int(cfg.lr_warmup * cfg.steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))
    return f


def _plan(cfg: TrainConfig, size: int) -> tuple[int, int]:
    """(micro-batch per rank, micro-batches per step): the global batch splits evenly over ranks and micro-batches."""
    from imprag_bench.harness.errors import UserError

    if cfg.batch_size % size:
        raise UserError(f"batch_size: {cfg.batch_size} does not split over {size} ranks; use a multiple of {size}")
    share = cfg.batch_size // size
    micro = share if cfg.micro_batch is None else min(share, int(cfg.micro_batch))  # at most the rank's share
    if micro < 1 or share % micro:
        raise UserError(f"micro_batch: {cfg.micro_batch} does not divide the per-rank batch {share} "
                        f"(batch_size {cfg.batch_size} over {size} ranks)")
    return micro, share // micro


def _wrapped(objective, cfg: TrainConfig, device):
    """(root, strategy, lr scale by parameter name) of the objective, wrapped once (train_in_stages calls
    `train` twice on one objective)."""
    cached = getattr(objective, "_engine_root", None)
    if cached is not None:
        return cached
    module = objective.module()
    by_id = getattr(objective, "lr_scales", dict)()
    scales = {n: by_id[id(p)] for n, p in module.named_parameters() if id(p) in by_id}
    ec = engine.EngineConfig(strategy=cfg.strategy, bf16=cfg.fsdp_bf16, checkpointing=cfg.checkpointing)
    root, strategy = engine.wrap(module, ec, getattr(objective, "fsdp_units", "model"), device)
    objective._engine_root = (root, strategy, scales)
    return objective._engine_root


def _save_checkpoint(objective, root, strategy: str, opt, sched, state: dict, out: Path) -> None:
    """`<out>/checkpoint`: the HF export evaluation loads (rank 0, from the full state dict), the sharded model
    and optimiser state (dcp/, every rank its shards) and extra.pt + trainer_state.json; swapped in whole."""
    rank, size = world()
    tmp, final, old = out / ".checkpoint.tmp", out / "checkpoint", out / ".checkpoint.old"
    if rank == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist_env.barrier()
    full = engine.full_state(root, strategy)
    if rank == 0:
        objective.save(tmp, full)
    del full
    engine.save_sharded(root, opt, tmp / "dcp")
    if rank == 0:
        torch.save({"scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "extra.pt")
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        atomic_write_text(tmp / "trainer_state.json", json.dumps({**state, "files": files}, indent=1))
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    dist_env.barrier()


def _resume(ck: Path, root, opt, sched, state: dict, cfg: TrainConfig, n_items: int) -> dict:
    """The saved trainer state, with model, optimiser, schedule and RNG restored (any world size)."""
    from imprag_bench.harness.errors import UserError

    try:
        saved = json.loads((ck / "trainer_state.json").read_text())
    except ValueError:
        raise UserError(f"{ck / 'trainer_state.json'}: unreadable; use another --out") from None
    if not (ck / "dcp").is_dir() or "fingerprint" not in saved:
        raise UserError(f"{ck}: a checkpoint without the sharded state (dcp/) this version resumes from; "
                        "use another --out")
    for rel, size in saved.get("files", {}).items():  # every file as long as when the checkpoint was completed
        f = ck / rel
        have = f.stat().st_size if f.exists() else None
        if have != size:
            raise UserError(f"{f}: damaged checkpoint file ({'missing' if have is None else f'{have} bytes'}, "
                            f"{size} recorded); restore it, or use another --out to train from the start")
    if saved["fingerprint"] != state["fingerprint"]:
        raise UserError(f"{ck}: checkpoint of another model (parameter names/shapes differ); use another --out")
    if saved["config"]["steps"] != cfg.steps or saved["n_items"] != n_items \
            or saved["config"]["batch_size"] != cfg.batch_size:
        raise UserError(f"{ck}: checkpoint of a different run (steps, batch or data differ); use another --out")
    engine.load_sharded(root, opt, ck / "dcp")
    extra = torch.load(ck / "extra.pt", weights_only=True)
    sched.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    saved.pop("files", None)
    return {**saved, "config": state["config"], "world": state["world"]}


def _mean_over_ranks(values: dict[str, float], size: int) -> dict[str, float]:
    if size == 1:
        return values
    every: list = [None] * size
    dist.all_gather_object(every, values)
    return {k: round(sum(v[k] for v in every) / size, 5) for k in values}


def train(objective: Objective, items: list, cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the checkpoint folder `<out>/checkpoint`."""
    rank, size = world()
    micro, n_micro = _plan(cfg, size)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = getattr(objective, "device", None)
    root, strategy, scales = _wrapped(objective, cfg, device)
    module = engine.inner(root)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    opt = torch.optim.AdamW(param_groups(params, {id(p): scales[n] for n, p in named if n in scales}, cfg),
                            lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    state = {"step": 0, "config": asdict(cfg), "n_items": len(items), "fingerprint": engine.fingerprint(module),
             "world": size, "strategy": strategy}
    ck = out / "checkpoint"
    if (ck / "trainer_state.json").exists():
        state = _resume(ck, root, opt, sched, state, cfg, len(items))
        if rank == 0:
            log(f"resuming from {ck} at step {state['step']}")
            logp = out / "log.jsonl"
            if logp.exists():  # drop the lines of steps after the checkpoint: they are redone
                kept = [ln for ln in logp.read_text().splitlines() if ln.strip()
                        and json.loads(ln)["step"] <= state["step"]]
                atomic_write_text(logp, "".join(f"{ln}\n" for ln in kept))
    start = state["step"]
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, start + cfg.stop_after)
    bar = tqdm(range(start, end), desc="training", unit="step", disable=rank != 0, dynamic_ncols=True)
    logf = open(out / "log.jsonl", "a") if rank == 0 else None
    t0 = time.time()
    for step in bar:
        idx = batch_indices(len(items), step, cfg.batch_size, cfg.seed)
        sums: dict[str, float] = {}
        for j in range(n_micro):  # global micro-batch j: this rank's slice of it
            part = idx[j * micro * size:(j + 1) * micro * size][rank * micro:(rank + 1) * micro]
            with engine.no_sync(root, strategy, last=j == n_micro - 1):
                losses = root(objective.losses, [items[i] for i in part], step, cfg.steps)
                (losses["loss"] / n_micro).backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / n_micro
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        values = _mean_over_ranks({k: round(v, 5) for k, v in sums.items()}, size)
        state["step"] = step + 1
        if logf:
            logf.write(json.dumps({"step": step + 1, "lr": sched.get_last_lr()[0],
                                   "elapsed_s": round(time.time() - t0, 2), **values}) + "\n")
            logf.flush()
            bar.set_postfix(values)
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == end:
            _save_checkpoint(objective, root, strategy, opt, sched, state, out)
    if logf:
        logf.close()
    dist_env.barrier()
    return ck


def warmup_steps(share: float, total_steps: int) -> int:
    """Number of NCE (warmup) steps before self-distillation starts."""
    return min(total_steps, int(-(-share * total_steps // 1)))


def train_in_stages(objective, items: list, tc: TrainConfig, warmup_share: float, save_warmup: bool) -> Path:
    """`train`, stopping once at the warmup boundary to copy the checkpoint to `checkpoint-warmup` (resume is
    exact, so the result equals one uninterrupted run). Honours tc.stop_after over both parts."""
    out = Path(tc.out)
    state = out / "checkpoint" / "trainer_state.json"
    done = json.loads(state.read_text())["step"] if state.exists() else 0
    warm = warmup_steps(warmup_share, tc.steps)
    budget = tc.stop_after
    if save_warmup and done < warm < tc.steps:
        first = warm - done if budget is None else min(budget, warm - done)
        ck = train(objective, items, replace(tc, stop_after=first))
        done += first
        budget = None if budget is None else budget - first
        if done == warm and world()[0] == 0:
            dst = out / "checkpoint-warmup"
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(ck, dst, ignore=shutil.ignore_patterns("dcp", "extra.pt"))
        if budget == 0:
            return ck
    return train(objective, items, replace(tc, stop_after=budget))
