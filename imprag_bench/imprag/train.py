"""`imprag-bench train imprag`: pseudo-label candidates, build the training mix, train, return the checkpoint.

Steps of `run(cfg)`:
1. the seen tasks' train splits (nq, hotpotqa; unseen tasks are refused) and the corpus;
2. the shared training data (harness.training.data.training_items), exactly what the trained baselines get:
   pseudo-labels from the shared dense retriever (cached in `<out>`), the mix (retrieval items + instruction
   items + ~10% plain text) and, with `train_fewshot` > 0, the evaluation's demonstrations on retrieval prompts;
3. stage 0 when `stage0_steps` > 0 (imprag.projection_warmup, a CPU-budget addition): layer b's q/k
   projections fitted on frozen features against the whole corpus, saved as `<out>/checkpoint-stage0`;
4. harness.training.loop.train with imprag.objective.ImpRAGObjective; at the warmup -> self-distillation boundary
   the checkpoint is also copied to `<out>/checkpoint-warmup`, so every stage can be evaluated (Table 3);
5. when `refit_steps` > 0 (CPU `full`), the projections are fitted again on the trained model's features,
   saved as `<out>/checkpoint-refit`, which `run` then returns.
Evaluate with `imprag-bench run --systems imprag:checkpoint=<the returned folder>` (the index is rebuilt from
the trained weights: it is bound to their digest).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from imprag_bench.harness import dist as dist_env
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write_text
from imprag_bench.harness.registry import TRAINERS
from imprag_bench.harness.hardware import use_bf16
from imprag_bench.harness.training.config import SharedTrainConfig, default_out, engine_settings
from imprag_bench.harness.training.data import training_items
from imprag_bench.harness.training.loop import TrainConfig, train_in_stages, world
from imprag_bench.harness.training.trainer import Trainer
from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig


@dataclass
class ImpRAGTrainConfig(SharedTrainConfig):
    """ImpRAG's own training settings (presets/train/imprag.yaml) on top of the shared budget. Defaults are the
    paper's; the CPU presets' deviations are named in their `additions`."""

    t: int | None = None  # last reading layer (None: the paper's layer table / its scaling)
    query_k: int = 10  # E_q is computed at positions query_k * l_max, as at inference with k passages
    passage_encoding: str = "concat"
    pooling: str = "last"  # "mean": an ablation axis (harness.pooling), never a paper recipe's
    lam: float = 1.0  # weight of J_ret (the paper gives none)
    gen_weight: float = 1.0
    score_scale: float | str = 1.0  # Eq. 3 has no scale; "1/sqrt(head_dim)" is the attention's own scale
    tau_r: float | None = None  # P_R temperature (Eq. 5); None: 1 / score_scale
    random_negatives: int = 0
    distill_over: str = "all"  # P_R's normaliser: "all" of C (the paper) or each query's "own" P u N_h
    teacher_over: str = "all"  # LM likelihoods for every candidate in C (the paper), or "own" only (P_T = 0 else)
    retriever_lr_scale: float = 1.0
    stage0_steps: int = 0
    stage0_lr: float = 3e-3
    refit_steps: int = 0
    save_warmup: bool = True


def build_objective(cfg: ImpRAGTrainConfig, corpus) -> ImpRAGObjective:
    """The model (from cfg['model']) wrapped in the ImpRAG objective with the preset's loss settings."""
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    device = dist_env.rank_device(cfg["device"])  # one GPU per torchrun rank
    hf, tok = load_lm(cfg["model"], device=device)
    model = ImpRAGModel(hf, tok, ImpRAGConfig(b=cfg["b"], t=cfg["t"], l_max=cfg["l_max"], k=cfg["query_k"],
                                              passage_encoding=cfg["passage_encoding"], pooling=cfg["pooling"]))
    # every objective setting has a training-config key of the same name (checked by a test)
    ocfg = ObjectiveConfig(**{**{f.name: cfg[f.name] for f in fields(ObjectiveConfig)},
                              "bf16": use_bf16(cfg["bf16"], device)})
    return ImpRAGObjective(model, lambda ids: [p.as_text() for p in corpus.get_many(ids)], ocfg,
                           negative_pool=corpus.ids if cfg["random_negatives"] else None)


def run(cfg: ImpRAGTrainConfig) -> Path:
    """Train ImpRAG with the settings `cfg` (a preset plus overrides); resumes from `<out>/checkpoint`."""
    from imprag_bench.tasks.corpora import load_corpus

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    out = Path(default_out("imprag", cfg))
    out.mkdir(parents=True, exist_ok=True)
    rank, size = world()
    if size > 1 and cfg.get("refit_steps") and cfg.get("strategy", "auto") != "ddp":
        raise UserError("refit_steps: the refit runs on the whole model after training, which FSDP2 leaves "
                        "sharded over the ranks; use strategy=ddp, or refit_steps=0 under torchrun")
    corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    examples, items = training_items(cfg, corpus, out)
    steps = cfg["steps"] or max(1, cfg["epochs"] * len(items) // cfg["batch_size"])
    if rank == 0:
        kinds = {k: sum(i.kind == k for i in items) for k in sorted({i.kind for i in items})}
        atomic_write_text(out / "train_config.json", json.dumps(
            {**cfg.to_dict(), "resolved_steps": steps, "mix": kinds, "world": size}, indent=1))
    objective = build_objective(cfg, corpus)
    if cfg.get("stage0_steps"):
        projection_fit(objective, items, corpus, cfg, cfg["stage0_steps"], out, out / "checkpoint-stage0",
                       skip_if=out / "checkpoint")
    tc = TrainConfig(out=str(out), steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"],
                     weight_decay=cfg["weight_decay"], grad_clip=cfg["grad_clip"], lr_warmup=cfg["lr_warmup"],
                     seed=cfg["seed"], ckpt_every=cfg["ckpt_every"], stop_after=cfg.get("stop_after"),
                     **engine_settings(cfg, str(objective.model.device)))
    ck = train_in_stages(objective, items, tc, cfg["warmup_share"], bool(cfg.get("save_warmup", True)))
    state = json.loads((ck / "trainer_state.json").read_text())
    if not cfg.get("refit_steps") or state["step"] < steps:
        return ck
    # the joint stages move the features E_q/E_p are projected from; refit the projections to them
    return projection_fit(objective, items, corpus, cfg, cfg["refit_steps"], out / "refit", out / "checkpoint-refit")


def stage0_inputs(items: list) -> tuple[list[str], list[list[str]]]:
    """(prompts, positive passage ids) of the retrieval items, one per question in id order (shared with
    RA-DIT-Llama's stage 0: harness.training.projection_fit.fit_inputs)."""
    from imprag_bench.harness.training.projection_fit import fit_inputs

    return fit_inputs(items)


def projection_fit(objective, items: list, corpus, cfg: dict, n_steps: int, work: Path, dst: Path,
                   skip_if: Path | None = None) -> Path:
    """Fit layer b's q_proj/k_proj against the whole corpus on the current model's frozen features
    (imprag_bench.imprag.projection_warmup on the shared harness.training.projection_fit; idempotent) and save
    the model to `dst` (not when `skip_if` exists: the joint training already started from this fit)."""
    from imprag_bench.harness.assets import cache_root
    from imprag_bench.imprag.projection_warmup import ProjectionWarmupConfig, run_stage0

    prompts, positives = stage0_inputs(items)
    work.mkdir(parents=True, exist_ok=True)
    fit = ProjectionWarmupConfig(n_steps, cfg["stage0_lr"], seed=cfg["seed"],
                                 bf16=use_bf16(cfg["bf16"], str(objective.model.device)))
    run_stage0(objective.model, prompts, positives, corpus.ids, corpus.texts, fit, work, cfg["query_k"],
               objective.scale, cache_root() / "imprag-stage0")
    if world()[0] == 0 and not dst.exists() and not (skip_if is not None and skip_if.exists()):
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        objective.save(tmp)
        os.replace(tmp, dst)
    return dst


TRAINERS.add("imprag", Trainer("imprag", ImpRAGTrainConfig, run,
                               "ImpRAG: NCE warmup on pseudo-labels, then self-distillation; joint LM loss"))
