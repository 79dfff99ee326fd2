"""The trained explicit-query baselines as harness systems: RA-IT, RA-DIT and RA-DIT-Llama read a checkpoint of
`imprag-bench train ra-it|ra-dit|ra-dit-llama` (its reader LM, and its retriever in `<checkpoint>/retriever`)
and answer like `baselines.systems.RetrieveRead`: the explicit query's top-k passages in the reader's context.
Training lives in `baselines.ra_dit`.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from imprag_bench.baselines.systems import INDEX, QUERY, RetrieveRead
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.hardware import use_bf16
from imprag_bench.harness.options import BF16, Option
from imprag_bench.harness.pooling import CENTRE_OPTION, POOLING_OPTION
from imprag_bench.harness.registry import SYSTEMS


def checkpoint_retriever(folder: str | Path, corpus, ctx):
    """The retriever saved in a trained baseline's checkpoint (`<checkpoint>/retriever`)."""
    from imprag_bench.harness.dense import DenseRetriever
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceRetriever

    rdir = Path(folder) / "retriever"
    meta_path = rdir / "retriever.json"
    if not meta_path.is_file():
        raise UserError(f"{folder}: no retriever/retriever.json; is it a checkpoint of a trained RA baseline?")
    meta = json.loads(meta_path.read_text())
    factory = ctx.opt("index", "auto")
    if meta.get("kind") == "lm-slice":
        return LMSliceRetriever(corpus, ctx.cache_dir, rdir, factory=factory, device=ctx.opt("device", "cpu"),
                                bf16=use_bf16(ctx.opt("bf16", "auto"), ctx.opt("device", "cpu")),
                                pooling=ctx.opt("pooling"), centre=bool(ctx.opt("centre", False)))
    if ctx.opt("pooling") is not None or ctx.opt("centre"):
        raise UserError(f"{folder}: pooling and centre apply to ra-dit-llama's LM-slice retriever only")
    if "encoder" in meta:  # RA-IT: an off-the-shelf encoder by name
        return DenseRetriever(corpus, ctx.cache_dir, encoder=meta["encoder"], factory=factory,
                              device=ctx.opt("device", "cpu"))
    return DenseRetriever(corpus, ctx.cache_dir, encoder=str(rdir), factory=factory, device=ctx.opt("device", "cpu"))


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



RA_OPTIONS = {  # imprag_bench.harness.options: what the trained baselines accept beyond the run-wide settings
    "checkpoint": Option(str, None, "the trained model: OUT/reader/checkpoint of "
                         "`imprag-bench train ra-it|ra-dit|ra-dit-llama --out OUT`", folder=True, required=True),
    "query": QUERY,
    "passage_tokens": Option(int, None, "passage budget in tokens (default: the one it was trained with)", min=1),
    "index": INDEX,
    "bf16": BF16,
}


SLICE_OPTIONS = {**RA_OPTIONS, "pooling": POOLING_OPTION, "centre": CENTRE_OPTION}  # harness.pooling's axis


def _register(name: str, doc: str, options: dict = RA_OPTIONS) -> None:
    f = _system(name)
    f.__doc__ = doc
    f.options = options
    SYSTEMS.add(name, f)


_register("ra-it", "RA-IT: trained reader + off-the-shelf dense top-k in context (checkpoint=..., query=prompt|oracle)")
_register("ra-dit", "RA-DIT: LM-distilled dense retriever + trained reader (checkpoint=..., query=prompt|oracle)")
_register("ra-dit-llama", "RA-DIT-Llama: LM layers 0..b copy as retriever + trained reader (checkpoint=..., "
                          "query=prompt|oracle; pooling, centre: the pooling ablation axis)", SLICE_OPTIONS)
