"""The training loop shared by ImpRAG and the trained explicit-query baselines.

An `Objective` owns the model and turns a batch of TrainItems into named losses; this loop owns what is
common: seeded batch order, AdamW with linear warm-up/decay, gradient clipping, data parallelism, progress
and loss logging, and checkpoints that let an interrupted run resume and end exactly where an
uninterrupted run ends.

Data parallelism: launch with `torchrun --nproc_per_node N` (gloo on CPU, nccl on GPU). Each rank takes its
slice of every global batch; gradients are averaged with all-reduce after backward, and objectives that use
in-batch negatives gather candidate embeddings across ranks with `gather_with_grad`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from imprag_bench.harness import dist as dist_env
from imprag_bench.harness.assets import log


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


class Objective(Protocol):
    """What a trainable method provides to the loop."""

    def parameters(self) -> Iterable[torch.nn.Parameter]: ...
    # optional: def lr_scales(self) -> dict[int, float]: id(parameter) -> multiplier of the lr (default 1)
    def losses(self, batch: list, step: int, total_steps: int) -> dict[str, torch.Tensor]: ...
    def save(self, folder: Path) -> None: ...
    def load(self, folder: Path) -> None: ...


def world() -> tuple[int, int]:
    """(rank, world size) as harness.dist reads them from torchrun's environment; under torchrun the default
    process group (NCCL on GPUs, gloo on CPU) is started here for the gradient all-reduce."""
    rank, size = dist_env.rank_world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, size


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0; this rank's slice keeps its gradient."""
    rank, size = world()
    if size == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def gather_candidates(ids: list[str], emb: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """All ranks' (passage ids, embeddings [n_r, d]) concatenated in rank order; the counts may differ per
    rank (padded for the all-gather, then cut). This rank's rows keep their gradient."""
    rank, size = world()
    if size == 1:
        return list(ids), emb
    lists: list = [None] * size
    dist.all_gather_object(lists, list(ids))
    n_max = max(1, max(len(x) for x in lists))
    padded = torch.cat([emb, emb.new_zeros((n_max - emb.shape[0], emb.shape[1]))])
    full = gather_with_grad(padded)
    parts = [full[r * n_max:r * n_max + len(lists[r])] for r in range(size)]
    return [pid for x in lists for pid in x], torch.cat(parts)


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


def _save_checkpoint(objective, opt, sched, state: dict, out: Path) -> None:
    tmp = out / ".checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    objective.save(tmp)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    final = out / "checkpoint"
    old = out / ".checkpoint.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def train(objective: Objective, items: list, cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the checkpoint folder `<out>/checkpoint`."""
    rank, size = world()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(params, getattr(objective, "lr_scales", dict)(), cfg), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    state = {"step": 0, "config": asdict(cfg), "n_items": len(items)}
    ck = out / "checkpoint"
    if (ck / "trainer_state.json").exists():
        saved = json.loads((ck / "trainer_state.json").read_text())
        if saved["config"]["steps"] != cfg.steps or saved["n_items"] != len(items):
            raise ValueError(f"{ck}: checkpoint of a different run (steps/data differ); use another --out")
        objective.load(ck)
        extra = torch.load(ck / "optimizer.pt", weights_only=True)
        opt.load_state_dict(extra["optimizer"])
        sched.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        state = saved
        if rank == 0:
            log(f"resuming from {ck} at step {state['step']}")
            logp = out / "log.jsonl"
            if logp.exists():  # drop the lines of steps after the checkpoint: they are redone
                kept = [ln for ln in logp.read_text().splitlines() if ln.strip()
                        and json.loads(ln)["step"] <= state["step"]]
                logp.write_text("".join(f"{ln}\n" for ln in kept))
    start = state["step"]
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, start + cfg.stop_after)
    bar = tqdm(range(start, end), desc="training", unit="step", disable=rank != 0, dynamic_ncols=True)
    logf = open(out / "log.jsonl", "a") if rank == 0 else None
    t0 = time.time()
    for step in bar:
        idx = batch_indices(len(items), step, cfg.batch_size, cfg.seed)
        share = math.ceil(len(idx) / size)
        batch = [items[i] for i in idx[rank * share:(rank + 1) * share]]
        losses = objective.losses(batch, step, cfg.steps)
        losses["loss"].backward()
        if size > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= size
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        values = {k: round(float(v.detach() if torch.is_tensor(v) else v), 5) for k, v in losses.items()}
        state["step"] = step + 1
        if logf:
            logf.write(json.dumps({"step": step + 1, "lr": sched.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 2),
                                   **values}) + "\n")
            logf.flush()
            bar.set_postfix(values)
        if rank == 0 and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == end):
            _save_checkpoint(objective, opt, sched, state, out)
    if logf:
        logf.close()
    if size > 1:
        dist.barrier()
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
            shutil.copytree(ck, dst, ignore=shutil.ignore_patterns("optimizer.pt"))
        if budget == 0:
            return ck
    return train(objective, items, replace(tc, stop_after=budget))
