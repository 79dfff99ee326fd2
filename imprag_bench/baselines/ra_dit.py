"""The paper's trained explicit-query baselines (section 7): RA-IT, RA-DIT and RA-DIT-Llama.

All three retrieve with an explicit query (the whole prompt by default, `query=oracle` for the task's
hand-designed query, paper Table 4) and read the top-k passages as text in the LM's context
(`baselines.systems.RetrieveRead` + `baselines.reader.Reader`). They train on the shared training layer
(harness.training): the same items as ImpRAG at the same preset (`data.training_items`: seen-task examples,
cached pseudo-labels, mix, demonstrations), the same loop and losses. The unseen tasks are never read.

- RA-IT: off-the-shelf dense retriever (the shared pseudo-labeller `retriever`: MiniLM offline,
  facebook/contriever-msmarco in the paper preset); the reader (all LM parameters) fine-tuned with J_gen on
  the mix, retrieval items reading their top-`n_read`.
- RA-DIT: stage 1 fine-tunes the dense retriever with the LM-likelihood distillation (Eq. 6) on the
  retrieval items, P_T from the frozen base LM; stage 2 is RA-IT's reader training with the tuned retriever.
- RA-DIT-Llama: the retriever is a separate copy of the base LM's layers 0..b (ImpRAG's bottom group),
  embedding like ImpRAG (`baselines.retrievers.lm_slice`); stage 1 warms it up with multi-label NCE (Eq. 3)
  on the pseudo-labels for `warmup_share` of its steps, then distils as RA-DIT; stage 2 as RA-IT. Its
  `cpu-additions` recipe (presets/train/ra-dit-llama.yaml, the default at the CPU budgets) adds ImpRAG's
  retriever additions: stage 0 (the shared q/k fit, baselines.retrievers.slice_fit) before stage 1, random
  corpus negatives and 0.1x lr in stage 1, scores x 1/sqrt(head_dim), and at `full` a refit after stage 1.

Training folder layout (`imprag-bench train ra-dit --out OUT`): OUT/retriever/checkpoint (stage 1, resumable),
OUT/reader/checkpoint (stage 2, resumable; the final checkpoint: an HF LM folder that `harness.lm.load_lm`
loads, with `retriever/` inside: the tuned retriever's files, or for RA-IT a `retriever.json` naming the
off-the-shelf encoder); RA-DIT-Llama's additions also write OUT/stage0 and OUT/refit (the fitted projections and
their loss logs) and OUT/retriever/checkpoint-refit (the refit slice the reader then reads with). Evaluate
with `ra-dit:checkpoint=OUT/reader/checkpoint` (options k, query, passage_tokens: default the l_max it was
trained with, from the checkpoint's ra_config.json).

Presets: presets/train/shared.yaml (the budget every trained system shares) plus presets/train/ra.yaml
(RA-IT, RA-DIT) or ra-dit-llama.yaml (`RATrainConfig`'s own keys). The reader stage has the shared steps x batch; the retriever stage (RA-DIT,
RA-DIT-Llama) runs `retriever_steps` (default: the shared steps) of `retriever_batch_size` retrieval items,
as in the paper's two-step pipeline.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from imprag_bench.harness.assets import cache_root, log
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import TRAINERS
from imprag_bench.harness.hardware import use_bf16
from imprag_bench.harness.training.config import SharedTrainConfig, default_out
from imprag_bench.harness.training.trainer import Trainer



@dataclass
class RATrainConfig(SharedTrainConfig):
    """The RA baselines' own training settings (presets/train/ra.yaml) on top of the shared budget."""

    encoder: str | None = None  # RA-IT / RA-DIT dense retriever; None: the shared pseudo-labeller `retriever`
    retriever_lr: float = 1e-5  # dense encoders; the LM-slice retriever uses `slice_lr`
    slice_lr: float | None = None  # None: the shared lr
    inbatch: bool = True  # in-batch negatives in P_R (P_T = 0 for them, see baselines.ra_objectives)
    lm_batch: int = 16  # sequences per frozen-LM pass when computing P_T
    # RA-DIT-Llama's LM-slice retriever only (its `cpu-additions` recipe, ImpRAG's additions; paper defaults):
    score_scale: float | str = 1.0  # Eq. 3 has none; "1/sqrt(head_dim)": the attention's own scale
    random_negatives: int = 0  # random corpus passages per retriever step as extra stop-grad negatives
    retriever_lr_scale: float = 1.0  # lr multiplier of the whole slice (every weight of it is the retriever's)
    stage0_steps: int = 0  # q/k fit against the whole corpus before the retriever stage
    stage0_lr: float = 3e-3
    refit_steps: int = 0  # the same fit again after the retriever stage (the reader reads with the refit)
    pooling: str = "last"  # "mean": an ablation axis (harness.pooling), never a paper recipe's


SLICE_ONLY = {"score_scale": 1.0, "random_negatives": 0, "retriever_lr_scale": 1.0, "stage0_steps": 0,
              "refit_steps": 0, "pooling": "last"}


def refuse_slice_keys(cfg, system: str) -> None:
    """RA-IT / RA-DIT: the LM-slice retriever's additions do not apply; a set one is refused, not ignored."""
    bad = [k for k, v in SLICE_ONLY.items() if cfg[k] != v]
    if bad:
        raise UserError(f"{system}: {', '.join(bad)} apply to ra-dit-llama's LM-slice retriever only")


def encoder_name(cfg) -> str:
    """The dense retriever RA-IT reads with and RA-DIT starts from."""
    return cfg.encoder or cfg.retriever


# ---- data ------------------------------------------------------------------------------------------------
def training_data(cfg, out: Path):
    """(corpus, mix): exactly the items ImpRAG trains on at the same preset (harness.training.data)."""
    from imprag_bench.harness.training.data import training_items
    from imprag_bench.tasks.corpora import load_corpus

    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    return corpus, training_items(cfg, corpus, out)[1]


def _steps(cfg: dict, n_items: int, stage: str) -> int:
    if stage == "retriever" and cfg.get("retriever_steps"):
        return int(cfg["retriever_steps"])
    if cfg.get("steps"):
        return int(cfg["steps"])
    return max(1, int(cfg["epochs"]) * n_items // int(cfg["batch_size"]))


def _cache(cfg: dict) -> Path:
    return Path(cfg.get("cache_dir") or cache_root())


def retrieved_contexts(items, retriever, corpus, k: int) -> dict:
    """The retriever's top-k passages (query = the item's prompt) for each retrieval item."""
    ret = [it for it in items if it.kind == "retrieval"]
    ranked = retriever.search([it.prompt for it in ret], k) if ret else []
    return {it.id: corpus.get_many(ids) for it, ids in zip(ret, ranked)}


def _train_cfg(cfg: dict, out: Path, stage: str, n_items: int, lr: float | None = None):
    from imprag_bench.harness.training.loop import TrainConfig

    from imprag_bench.harness.training.config import engine_settings

    bs = cfg.get("retriever_batch_size") if stage == "retriever" else None
    return TrainConfig(out=str(out), steps=_steps(cfg, n_items, stage), batch_size=int(bs or cfg["batch_size"]),
                       lr=float(lr if lr is not None else cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                       grad_clip=float(cfg["grad_clip"]), lr_warmup=float(cfg["lr_warmup"]), seed=int(cfg["seed"]),
                       ckpt_every=int(cfg["ckpt_every"]), stop_after=cfg.get("stop_after"),
                       **engine_settings(cfg, cfg["device"]))


def _stage_done(folder: Path, steps: int) -> bool:
    """Whether the stage's checkpoint is a finished run of `steps` steps (another step count is not finished:
    the loop then refuses the folder with its own error)."""
    st = folder / "checkpoint" / "trainer_state.json"
    if not st.exists():
        return False
    state = json.loads(st.read_text())
    return state["config"]["steps"] == steps and state["step"] >= steps


def train_reader(cfg: dict, corpus, mix, retriever, out: Path, system: str, retriever_folder=None,
                 retriever_pointer=None) -> Path:
    """Stage 2 (RA-IT's only stage): the whole LM fine-tuned with J_gen, retrieval items reading top-k."""
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.harness.training.loop import train
    from imprag_bench.baselines.ra_objectives import ReaderObjective

    k = int(cfg["n_read"])
    if _stage_done(out / "reader", _steps(cfg, len(mix), "reader")):  # a finished stage: nothing to recompute
        log(f"{system}: reader stage already finished in {out / 'reader'}")
        return out / "reader" / "checkpoint"
    contexts = retrieved_contexts(mix, retriever, corpus, k)
    model, tok = load_lm(cfg["model"], device=cfg["device"])
    obj = ReaderObjective(model, tok, contexts, int(cfg["l_max"]), int(cfg["max_prompt_tokens"]),
                          int(cfg["max_target_tokens"]), use_bf16(cfg["bf16"], cfg["device"]),
                          retriever_folder=retriever_folder, retriever_pointer=retriever_pointer,
                          meta={"system": system, "base_model": cfg["model"], "k_train": k})
    tc = _train_cfg(cfg, out / "reader", "reader", len(mix))
    log(f"{system}: reader stage, {tc.steps} steps x {tc.batch_size} over {len(mix)} items, top-{k} in context")
    return train(obj, mix, tc)


def train_retriever(cfg: dict, corpus, mix, trainable, lm, tok, out: Path, warmup_share: float,
                    lr: float, **extra) -> Path:
    """Stage 1: the retriever trained on the retrieval items against the frozen LM."""
    from imprag_bench.harness.training.loop import train, warmup_steps
    from imprag_bench.baselines.ra_objectives import RetrieverObjective

    items = [it for it in mix if it.kind == "retrieval"]
    tc = _train_cfg(cfg, out / "retriever", "retriever", len(items), lr)
    obj = RetrieverObjective(trainable, lm, tok, corpus, warmup_steps=warmup_steps(warmup_share, tc.steps),
                             passage_tokens=int(cfg["l_max"]), max_prompt_tokens=int(cfg["max_prompt_tokens"]),
                             max_target_tokens=int(cfg["max_target_tokens"]), tau_t=float(cfg["tau_t"]),
                             inbatch=bool(cfg["inbatch"]), lm_batch=int(cfg["lm_batch"]),
                             bf16=use_bf16(cfg["bf16"], cfg["device"]), **extra)
    log(f"retriever stage: {tc.steps} steps x {tc.batch_size} over {len(items)} retrieval items "
        f"({obj.warmup_steps} NCE warm-up steps, then distillation)")
    return train(obj, items, tc)


def _out(cfg, system: str) -> Path:
    return Path(default_out(system, cfg))


def _setup(cfg, system: str):
    """(cfg with `device` as this rank's own (harness.dist.rank_device), out, corpus, mix); rank 0 records
    the settings in train_config.json."""
    from imprag_bench.harness import dist as dist_env
    from imprag_bench.harness.io import atomic_write_text

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    recorded = cfg.to_dict()
    cfg = cfg.replace(device=dist_env.rank_device(cfg["device"]))
    out = _out(cfg, system)
    corpus, mix = training_data(cfg, out)
    if dist_env.is_main():
        atomic_write_text(out / "train_config.json", json.dumps(
            {**recorded, "system": system, "n_items": len(mix), "world": dist_env.rank_world()[1]},
            indent=1, default=str))
    return cfg, out, corpus, mix


def run_ra_it(cfg: dict) -> Path:
    from imprag_bench.harness.dense import DenseRetriever

    refuse_slice_keys(cfg, "ra-it")
    cfg, out, corpus, mix = _setup(cfg, "ra-it")
    retriever = DenseRetriever(corpus, _cache(cfg), encoder=encoder_name(cfg), device=cfg["device"])
    return train_reader(cfg, corpus, mix, retriever, out, "ra-it",
                        retriever_pointer={"kind": "dense", "encoder": encoder_name(cfg)})


def _tuned_retriever_then_reader(cfg: dict, name: str, make_trainable, warmup_share: float, lr: float,
                                 make_retriever, before=None, after=None, objective=None) -> Path:
    """RA-DIT's two steps: train the retriever against the frozen LM (stage 1, skipped when done), then the
    reader as in RA-IT with the tuned retriever. Optional hooks (RA-DIT-Llama's CPU additions):
    `before(trainable, corpus, mix, out)` runs before stage 1 starts or resumes, `objective(corpus)` gives extra
    RetrieverObjective arguments, `after(corpus, mix, out, rdir) -> rdir` runs once stage 1 is complete and
    may return another retriever folder for the reader. A run stopped inside stage 1 (`stop_after`) returns
    the retriever checkpoint: the reader never trains on a partial retriever."""
    from imprag_bench.harness.lm import load_lm

    cfg, out, corpus, mix = _setup(cfg, name)
    rdir = out / "retriever" / "checkpoint"
    n_ret = sum(it.kind == "retrieval" for it in mix)
    n_steps = _steps(cfg, n_ret, "retriever")
    if not _stage_done(out / "retriever", n_steps):
        lm, tok = load_lm(cfg["model"], device=cfg["device"])
        trainable = make_trainable(lm, tok)
        if before is not None:
            before(trainable, corpus, mix, out)
        train_retriever(cfg, corpus, mix, trainable, lm, tok, out, warmup_share=warmup_share, lr=lr,
                        **(objective(corpus) if objective else {}))
        del lm
        if not _stage_done(out / "retriever", n_steps):
            return rdir
    if after is not None:
        rdir = after(corpus, mix, out, rdir)
    return train_reader(cfg, corpus, mix, make_retriever(corpus, rdir), out, name, retriever_folder=rdir)


def run_ra_dit(cfg: dict) -> Path:
    from imprag_bench.baselines.ra_objectives import TrainableRetriever
    from imprag_bench.harness.dense import DenseEncoder, DenseRetriever

    refuse_slice_keys(cfg, "ra-dit")

    def trainable(lm, tok):
        return TrainableRetriever(DenseEncoder(encoder_name(cfg), bf16=False, device=cfg["device"]))
    return _tuned_retriever_then_reader(
        cfg, "ra-dit", trainable, 0.0, float(cfg["retriever_lr"]),
        lambda corpus, rdir: DenseRetriever(corpus, _cache(cfg), encoder=str(rdir), device=cfg["device"]))


def slice_score_scale(value: float | str, head_dim: int) -> float:
    """The factor the slice's scores get in training (harness.training.losses.score_scale), as a UserError."""
    from imprag_bench.harness.training.losses import score_scale

    try:
        return score_scale(value, head_dim)
    except ValueError as e:
        raise UserError(str(e)) from None


def _slice_fit(cfg: dict, enc, mix, corpus, n_steps: int, work: Path) -> None:
    """Stage 0 / refit of the slice (baselines.retrievers.slice_fit, the shared fit as ImpRAG's)."""
    from imprag_bench.baselines.retrievers.slice_fit import fit_slice
    from imprag_bench.harness.training.projection_fit import ProjectionFitConfig

    fit = ProjectionFitConfig(n_steps, float(cfg["stage0_lr"]), seed=int(cfg["seed"]),
                              bf16=use_bf16(cfg["bf16"], cfg["device"]))
    fit_slice(enc, mix, corpus.ids, corpus.texts, fit, work, slice_score_scale(cfg["score_scale"], enc.head_dim),
              _cache(cfg) / "ra-dit-llama-stage0")


def run_ra_dit_llama(cfg: dict) -> Path:
    """RA-DIT-Llama; with the `cpu-additions` recipe also ImpRAG's retriever additions: stage 0 (`stage0_steps`)
    on the slice before stage 1, random corpus negatives and a lower lr in stage 1, and at `full` a refit
    (`refit_steps`) after it, saved as OUT/retriever/checkpoint-refit, which the reader stage then reads with."""
    from imprag_bench.baselines.ra_objectives import TrainableRetriever
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder, LMSliceRetriever

    def trainable(lm, tok):
        enc = LMSliceEncoder.from_lm(lm, tok, b=cfg.get("b"), l_max=int(cfg["l_max"]), pooling=cfg["pooling"])
        return TrainableRetriever(enc, slice_score_scale(cfg["score_scale"], enc.head_dim))

    def before(tr, corpus, mix, out):
        if cfg["stage0_steps"] > 0:
            _slice_fit(cfg, tr.enc, mix, corpus, int(cfg["stage0_steps"]), out / "stage0")

    def objective(corpus):
        return {"random_negatives": int(cfg["random_negatives"]), "seed": int(cfg["seed"]),
                "negative_pool": corpus.ids if cfg["random_negatives"] else None,
                "lr_scale": float(cfg["retriever_lr_scale"])}

    def after(corpus, mix, out, rdir):
        if cfg["refit_steps"] <= 0:
            return rdir
        dst = out / "retriever" / "checkpoint-refit"
        if not dst.exists():  # the stage-1 slice's features moved: fit its projections to them again
            enc = LMSliceEncoder.load(rdir, cfg["device"])
            _slice_fit(cfg, enc, mix, corpus, int(cfg["refit_steps"]), out / "refit")
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            enc.save(tmp)
            os.replace(tmp, dst)
        return dst
    return _tuned_retriever_then_reader(
        cfg, "ra-dit-llama", trainable, float(cfg["warmup_share"]), float(cfg.get("slice_lr") or cfg["lr"]),
        lambda corpus, rdir: LMSliceRetriever(corpus, _cache(cfg), rdir, device=cfg["device"],
                                              bf16=use_bf16(cfg["bf16"], cfg["device"])),
        before=before, after=after, objective=objective)


TRAINERS.add("ra-it", Trainer("ra-it", RATrainConfig, run_ra_it,
                              "RA-IT: reader fine-tuned with off-the-shelf dense top-k in context", "ra"))
TRAINERS.add("ra-dit", Trainer("ra-dit", RATrainConfig, run_ra_dit,
                               "RA-DIT: dense retriever distilled from LM likelihoods, then RA-IT reader", "ra"))
TRAINERS.add("ra-dit-llama", Trainer("ra-dit-llama", RATrainConfig, run_ra_dit_llama,
                                     "RA-DIT-Llama: LM layers 0..b copy as retriever (NCE + distillation), "
                                     "then RA-IT reader"))
