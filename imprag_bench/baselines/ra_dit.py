"""The paper's trained explicit-query baselines (section 7): RA-IT, RA-DIT and RA-DIT-Llama.

All three retrieve with an explicit query (the whole prompt by default, `query=oracle` for the task's
hand-designed query, paper Table 4) and read the top-k passages as text in the LM's context
(`imprag_bench.baselines.systems.RetrieveRead` + `imprag_bench.baselines.reader.Reader`). Training uses the same data as ImpRAG:
`imprag_bench.imprag.train_mix.build_mix` over the seen tasks' (nq, hotpotqa) train splits with ImpRAG's pseudo-label
candidates (`imprag_bench.imprag.train.load_examples` / `imprag_bench.imprag.train.candidates`, i.e. `imprag_bench.imprag.candidates`), the loop
`imprag_bench.imprag.trainer.train` and the losses of `imprag_bench.imprag.losses`. The unseen tasks are never read.

- RA-IT: off-the-shelf dense retriever (MiniLM offline, `encoder=facebook/contriever-msmarco` on the hub);
  the reader (all LM parameters) fine-tuned with J_gen on the mix, retrieval items reading their top-k.
- RA-DIT: stage 1 fine-tunes the dense retriever with the LM-likelihood distillation (Eq. 6) on the
  retrieval items, P_T from the frozen base LM; stage 2 is RA-IT's reader training with the tuned retriever.
- RA-DIT-Llama: the retriever is a separate copy of the base LM's layers 0..b (ImpRAG's bottom group),
  embedding like ImpRAG (`imprag_bench.baselines.retrievers.lm_slice`); stage 1 warms it up with multi-label NCE (Eq. 3)
  on the pseudo-labels for `warmup_share` of its steps, then distils as RA-DIT; stage 2 as RA-IT.

Training folder layout (`imprag-bench train ra-dit --out OUT`): OUT/retriever/checkpoint (stage 1, resumable),
OUT/reader/checkpoint (stage 2, resumable; the final checkpoint: an HF LM folder that `imprag_bench.harness.lm.load_lm`
loads, with `retriever/` inside: the tuned retriever's files, or for RA-IT a `retriever.json` naming the
off-the-shelf encoder). Evaluate with `ra-dit:checkpoint=OUT/reader/checkpoint` (options k, query,
passage_tokens: default the l_max it was trained with, from the checkpoint's ra_config.json).

Budget and data: every preset (quick / full / gpu) copies ImpRAG's preset of the same name
(`imprag_bench.imprag.train.PRESETS`, every key): the same example selection, pseudo-labels (cached in
OUT/candidates.jsonl), mix, seed, steps x global batch, lr schedule, bf16 autocast, prompt/target cuts, and
l_max as the passage budget. The reader stage reads top-`k` retrieved passages (default: ImpRAG's `n_read`,
the number of candidates ImpRAG's J_gen reads). The retriever stage (RA-DIT, RA-DIT-Llama) runs
`retriever_steps` steps (default ImpRAG's steps; 40 in quick) of `retriever_batch_size` retrieval items;
RA-DIT-Llama's NCE share is ImpRAG's `warmup_share`. The baselines therefore see the same data and reader
steps as ImpRAG plus a separate retriever stage, as in the paper (a two-step pipeline).
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from imprag_bench.harness.assets import cache_root, log
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import SYSTEMS, TRAINERS
from imprag_bench.harness.training import Trainer
from imprag_bench.baselines.systems import RetrieveRead

# Every preset starts from ImpRAG's preset of the same name (imprag_bench.imprag.train.PRESETS), all keys copied, so that
# the baselines train on the same mix (same example selection, seed, pseudo-label settings such as n_pos,
# n_hard, answer_positives, same instruction / plain shares) for the same steps x batch with the same optimiser,
# bf16, l_max and prompt/target cuts. Keys of ImpRAG's joint objective (lam, tau_r, score_scale, passage_encoding,
# t, query_k, gen_weight, save_warmup, stage0_*, random_negatives, bank_size, distill_over, train_fewshot) are
# carried but unused; `warmup_share` is RA-DIT-Llama's NCE share.
_OURS = {
    "encoder": "minilm",       # RA-IT / RA-DIT dense retriever (paper: facebook/contriever-msmarco)
    "k": None,                 # passages read by retrieval items in reader training (None: ImpRAG's n_read)
    "retriever_steps": None,   # retriever stage (RA-DIT, RA-DIT-Llama); None: ImpRAG's steps
    "retriever_batch_size": None,  # None: ImpRAG's batch_size
    "retriever_lr": 1e-5,      # dense encoders; the LM-slice retriever uses ImpRAG's lr (`slice_lr`)
    "slice_lr": None,          # None: ImpRAG's lr
    "inbatch": True,           # in-batch negatives in P_R (P_T = 0 for them, see imprag_bench.baselines.ra_objectives)
    "lm_batch": 16,            # sequences per frozen-LM pass when computing P_T
    "out": None,
    "cache_dir": None,
}


def _presets() -> dict[str, dict]:
    from imprag_bench.imprag.train import PRESETS as IMPRAG

    out = {}
    for name, imp in IMPRAG.items():
        out[name] = {**_OURS, **imp, "out": None}  # default out: runs/train/<system>-<preset>
    # CPU quick preset: the retriever stage gets 40 steps (a distillation step costs 8 frozen-LM passes per
    # query); the reader stage has ImpRAG's quick steps.
    out["quick"]["retriever_steps"] = 40
    return out


PRESETS = _presets()


# ---- data ------------------------------------------------------------------------------------------------
def training_data(cfg: dict, out: Path):
    """(corpus, mix): exactly ImpRAG's training mix (imprag_bench.imprag.train's example selection, cached pseudo-labels,
    imprag_bench.imprag.train_mix.build_mix with the same seed and shares)."""
    from imprag_bench.imprag.train import candidates, load_examples
    from imprag_bench.imprag.train_mix import build_mix
    from imprag_bench.tasks.corpora import load_corpus

    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    examples = load_examples(cfg)
    cands = candidates(examples, corpus, cfg, out / "candidates.jsonl")
    mix = build_mix(examples, cands, corpus, seed=cfg["seed"],
                    n_instruct=int(cfg["instruct_share"] * len(examples)), plain_share=cfg["plain_share"])
    return corpus, mix


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
    from imprag_bench.imprag.trainer import TrainConfig

    bs = cfg.get("retriever_batch_size") if stage == "retriever" else None
    return TrainConfig(out=str(out), steps=_steps(cfg, n_items, stage), batch_size=int(bs or cfg["batch_size"]),
                       lr=float(lr if lr is not None else cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                       grad_clip=float(cfg["grad_clip"]), lr_warmup=float(cfg["lr_warmup"]), seed=int(cfg["seed"]),
                       ckpt_every=int(cfg["ckpt_every"]), stop_after=cfg.get("stop_after"))


def _stage_done(folder: Path, steps: int) -> bool:
    st = folder / "checkpoint" / "trainer_state.json"
    return st.exists() and json.loads(st.read_text())["step"] >= steps


def train_reader(cfg: dict, corpus, mix, retriever, out: Path, system: str, retriever_folder=None,
                 retriever_pointer=None) -> Path:
    """Stage 2 (RA-IT's only stage): the whole LM fine-tuned with J_gen, retrieval items reading top-k."""
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.trainer import train
    from imprag_bench.baselines.ra_objectives import ReaderObjective

    k = int(cfg.get("k") or cfg["n_read"])
    contexts = retrieved_contexts(mix, retriever, corpus, k)
    model, tok = load_lm(cfg["model"], device=cfg["device"])
    obj = ReaderObjective(model, tok, contexts, int(cfg["l_max"]), int(cfg["max_prompt_tokens"]),
                          int(cfg["max_target_tokens"]), bool(cfg["bf16"]), retriever_folder=retriever_folder,
                          retriever_pointer=retriever_pointer,
                          meta={"system": system, "base_model": cfg["model"], "k_train": k})
    tc = _train_cfg(cfg, out / "reader", "reader", len(mix))
    log(f"{system}: reader stage, {tc.steps} steps x {tc.batch_size} over {len(mix)} items, top-{k} in context")
    return train(obj, mix, tc)


def train_retriever(cfg: dict, corpus, mix, trainable, lm, tok, out: Path, warmup_share: float,
                    lr: float) -> Path:
    """Stage 1: the retriever trained on the retrieval items against the frozen LM."""
    from imprag_bench.imprag.objective import warmup_steps
    from imprag_bench.imprag.trainer import train
    from imprag_bench.baselines.ra_objectives import RetrieverObjective

    items = [it for it in mix if it.kind == "retrieval"]
    tc = _train_cfg(cfg, out / "retriever", "retriever", len(items), lr)
    obj = RetrieverObjective(trainable, lm, tok, corpus, warmup_steps=warmup_steps(warmup_share, tc.steps),
                             passage_tokens=int(cfg["l_max"]), max_prompt_tokens=int(cfg["max_prompt_tokens"]),
                             max_target_tokens=int(cfg["max_target_tokens"]), tau_t=float(cfg["tau_t"]),
                             inbatch=bool(cfg["inbatch"]), lm_batch=int(cfg["lm_batch"]), bf16=bool(cfg["bf16"]))
    log(f"retriever stage: {tc.steps} steps x {tc.batch_size} over {len(items)} retrieval items "
        f"({obj.warmup_steps} NCE warm-up steps, then distillation)")
    return train(obj, items, tc)


def _out(cfg: dict, system: str) -> Path:
    return Path(cfg.get("out") or f"runs/train/{system}-{cfg['preset']}")


def _setup(cfg: dict, system: str):
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    out = _out(cfg, system)
    corpus, mix = training_data(cfg, out)
    (out / "train_config.json").write_text(json.dumps({**cfg, "system": system, "n_items": len(mix)}, indent=1,
                                                      default=str))
    return out, corpus, mix


def run_ra_it(cfg: dict) -> Path:
    from imprag_bench.baselines.retrievers.dense import DenseRetriever

    out, corpus, mix = _setup(cfg, "ra-it")
    retriever = DenseRetriever(corpus, _cache(cfg), encoder=cfg["encoder"])
    return train_reader(cfg, corpus, mix, retriever, out, "ra-it",
                        retriever_pointer={"kind": "dense", "encoder": cfg["encoder"]})


def _tuned_retriever_then_reader(cfg: dict, name: str, make_trainable, warmup_share: float, lr: float,
                                 make_retriever) -> Path:
    """RA-DIT's two steps: train the retriever against the frozen LM (stage 1, skipped when done), then the
    reader as in RA-IT with the tuned retriever."""
    from imprag_bench.harness.lm import load_lm

    out, corpus, mix = _setup(cfg, name)
    rdir = out / "retriever" / "checkpoint"
    n_ret = sum(it.kind == "retrieval" for it in mix)
    if not _stage_done(out / "retriever", _steps(cfg, n_ret, "retriever")):
        lm, tok = load_lm(cfg["model"], device=cfg["device"])
        train_retriever(cfg, corpus, mix, make_trainable(lm, tok), lm, tok, out, warmup_share=warmup_share, lr=lr)
        del lm
    return train_reader(cfg, corpus, mix, make_retriever(corpus, rdir), out, name, retriever_folder=rdir)


def run_ra_dit(cfg: dict) -> Path:
    from imprag_bench.baselines.ra_objectives import DenseTrainable
    from imprag_bench.baselines.retrievers.dense import DenseEncoder, DenseRetriever

    def trainable(lm, tok):
        enc = DenseEncoder(cfg["encoder"], bf16=False)
        enc.model.to(cfg["device"])
        return DenseTrainable(enc)
    return _tuned_retriever_then_reader(
        cfg, "ra-dit", trainable, 0.0, float(cfg["retriever_lr"]),
        lambda corpus, rdir: DenseRetriever(corpus, _cache(cfg), encoder=str(rdir)))


def run_ra_dit_llama(cfg: dict) -> Path:
    from imprag_bench.baselines.ra_objectives import SliceTrainable
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder, LMSliceRetriever

    def trainable(lm, tok):
        return SliceTrainable(LMSliceEncoder.from_lm(lm, tok, b=cfg.get("b"), l_max=int(cfg["l_max"])))
    return _tuned_retriever_then_reader(
        cfg, "ra-dit-llama", trainable, float(cfg["warmup_share"]), float(cfg.get("slice_lr") or cfg["lr"]),
        lambda corpus, rdir: LMSliceRetriever(corpus, _cache(cfg), rdir, device=cfg["device"], bf16=True))


TRAINERS.add("ra-it", Trainer("ra-it", PRESETS, run_ra_it,
                              "RA-IT: reader fine-tuned with off-the-shelf dense top-k in context"))
TRAINERS.add("ra-dit", Trainer("ra-dit", PRESETS, run_ra_dit,
                               "RA-DIT: dense retriever distilled from LM likelihoods, then RA-IT reader"))
TRAINERS.add("ra-dit-llama", Trainer("ra-dit-llama", PRESETS, run_ra_dit_llama,
                                     "RA-DIT-Llama: LM layers 0..b copy as retriever (NCE + distillation), "
                                     "then RA-IT reader"))


# ---- systems ---------------------------------------------------------------------------------------------
def checkpoint_retriever(folder: str | Path, corpus, ctx):
    """The retriever saved in a trained baseline's checkpoint (`<checkpoint>/retriever`)."""
    from imprag_bench.baselines.retrievers.dense import DenseRetriever
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceRetriever

    rdir = Path(folder) / "retriever"
    meta_path = rdir / "retriever.json"
    if not meta_path.is_file():
        raise UserError(f"{folder}: no retriever/retriever.json; is it a checkpoint of a trained RA baseline?")
    meta = json.loads(meta_path.read_text())
    factory = ctx.opt("index", "Flat")
    if meta.get("kind") == "lm-slice":
        return LMSliceRetriever(corpus, ctx.cache_dir, rdir, factory=factory, device=ctx.opt("device", "cpu"),
                                bf16=bool(ctx.opt("bf16", True)))
    if "encoder" in meta:  # RA-IT: an off-the-shelf encoder by name
        return DenseRetriever(corpus, ctx.cache_dir, encoder=meta["encoder"], factory=factory)
    return DenseRetriever(corpus, ctx.cache_dir, encoder=str(rdir), factory=factory)


class TrainedRetrieveRead(RetrieveRead):
    """RetrieveRead whose reader reads passages cut to the budget it was trained with (the checkpoint's
    `ra_config.json` passage_tokens = the preset's l_max) unless the run gives `passage_tokens`."""

    def __init__(self, options: dict, make_retriever, checkpoint: str):
        super().__init__(options, make_retriever)
        from imprag_bench.baselines.ra_objectives import CONFIG_FILE

        path = Path(checkpoint) / CONFIG_FILE
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.defaults = {k: saved[k] for k in ("passage_tokens",) if k in saved}

    def prepare(self, corpus, ctx) -> None:
        super().prepare(corpus, replace(ctx, options={**self.defaults, **ctx.options}))


def _system(label: str):
    def factory(options: dict) -> RetrieveRead:
        ck = options.get("checkpoint")
        if not ck:
            raise UserError(f"system {label} needs checkpoint=<folder>: train it first with "
                            f"'imprag-bench train {label} --preset quick'")
        if not os.path.isdir(ck):
            raise UserError(f"{label}: checkpoint {ck} is not a folder")
        return TrainedRetrieveRead({"label": label, **options},
                                   lambda corpus, ctx: checkpoint_retriever(ck, corpus, ctx), ck)
    return factory


from imprag_bench.baselines.systems import INDEX, QUERY  # noqa: E402  (kept beside the systems they declare)
from imprag_bench.harness.options import Option  # noqa: E402

RA_OPTIONS = {  # imprag_bench.harness.options: what the trained baselines accept beyond the run-wide settings
    "checkpoint": Option(str, None, "the trained model: OUT/reader/checkpoint of "
                         "`imprag-bench train ra-it|ra-dit|ra-dit-llama --out OUT`", folder=True, required=True),
    "query": QUERY,
    "passage_tokens": Option(int, None, "passage budget in tokens (default: the one it was trained with)", min=1),
    "index": INDEX,
    "bf16": Option(bool, True, "bf16 for the LM-slice retriever (ra-dit-llama)"),
}


def _register(name: str, doc: str) -> None:
    f = _system(name)
    f.__doc__ = doc
    f.options = RA_OPTIONS
    SYSTEMS.add(name, f)


_register("ra-it", "RA-IT: trained reader + off-the-shelf dense top-k in context (checkpoint=..., query=prompt|oracle)")
_register("ra-dit", "RA-DIT: LM-distilled dense retriever + trained reader (checkpoint=..., query=prompt|oracle)")
_register("ra-dit-llama", "RA-DIT-Llama: LM layers 0..b copy as retriever + trained reader (checkpoint=..., "
                          "query=prompt|oracle)")
