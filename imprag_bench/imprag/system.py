"""ImpRAG as a harness system: the LM's own bottom layers index the corpus and embed the implicit query;
its middle layers read the retrieved passages as KV. There is no query text (Prediction.query is None).

Options (preset / `imprag:key=value`): model (default smollm2-135m) or checkpoint (an ImpRAG folder; an
`imprag_config.json` in it supplies b/t/l_max/passage_encoding/pooling unless given), k (5), b, t (default
`imprag_bench.imprag.model.default_layer_groups`), l_max (128), passage_encoding (concat), read_top_layers (false),
batch_size (8), max_new_tokens (16), pooling and centre (the pooling ablation axis, harness.pooling; default
last token, uncentred, as the paper), bf16 (bf16 autocast for the index build only: auto (default) = where
the device computes bf16 natively, true, false; the resolved bool is in the index binding and `self.bf16`),
index (FAISS factory, Flat), device (cpu).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from imprag_bench.harness import lm as hlm
from imprag_bench.harness.assets import log, sha256_file
from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.hardware import use_bf16
from imprag_bench.harness.index import build_index
from imprag_bench.harness.options import BF16, Option, declare
from imprag_bench.harness.pooling import CENTRE_OPTION, POOLING_OPTION, corpus_centring
from imprag_bench.harness.prompting import lm_input
from imprag_bench.harness.records import Example, Prediction
from imprag_bench.harness.registry import SYSTEMS
from imprag_bench.harness.system import RunContext
from imprag_bench.imprag.generate import STAGES
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

CONFIG_FILE = "imprag_config.json"
POOLING_BINDING = {"last": "k_proj pre-RoPE, last token", "mean": "k_proj pre-RoPE, mean of the tokens"}


def weights_digest(model, name: str) -> str:
    """sha256 of the safetensors files of a local model folder (alias resolved), else of the state dict."""
    try:
        path = Path(hlm.resolve_model_path(name))
    except Exception:  # not an alias, not a folder: fall back to the tensors themselves
        path = None
    files = sorted(path.glob("*.safetensors")) if path is not None and path.is_dir() else []
    h = hashlib.sha256()
    if files:
        for f in files:
            h.update(f.name.encode())
            h.update(bytes.fromhex(sha256_file(f)))
    else:
        for key, t in sorted(model.state_dict().items()):
            h.update(key.encode())
            h.update(t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def config_from_options(options: dict, folder: str | None = None) -> ImpRAGConfig:
    """ImpRAGConfig from run options, over an ImpRAG checkpoint's saved config where there is one."""
    saved = {}
    if folder and (Path(folder) / CONFIG_FILE).is_file():
        saved = json.loads((Path(folder) / CONFIG_FILE).read_text())
    merged = {**saved, **{k: options[k] for k in ("b", "t", "l_max", "passage_encoding", "read_top_layers",
                                                  "pooling") if options.get(k) is not None}}
    return ImpRAGConfig(b=merged.get("b"), t=merged.get("t"), k=int(options.get("k", 5)),
                        l_max=int(merged.get("l_max", 128)),
                        passage_encoding=merged.get("passage_encoding", "concat"),
                        read_top_layers=bool(merged.get("read_top_layers", False)),
                        pooling=merged.get("pooling", "last"))


class ImpRAGSystem:
    """Implicit-query RAG with one LM: index with layers 0..b, retrieve with E_q, read passage KV in b..t."""

    def __init__(self, options: dict):
        self.options = dict(options)
        self.name = options.get("label", "imprag")
        self.index = None
        self.mu_q = None  # the corpus mean query subtracted with `centre`
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.n_predicted = 0

    def prepare(self, corpus: Corpus | None, ctx: RunContext) -> None:
        self.ctx = ctx
        name = ctx.opt("checkpoint") or ctx.opt("model", "smollm2-135m")
        hf, tok = hlm.load_lm(name, dtype=ctx.opt("dtype", "auto"), device=ctx.opt("device", "cpu"))
        self.model = ImpRAGModel(hf, tok, config_from_options(ctx.options, ctx.opt("checkpoint")))
        self.k = int(ctx.opt("k", 5))
        self.batch_size = int(ctx.opt("batch_size", 8))
        self.max_new_tokens = int(ctx.opt("max_new_tokens", 16))
        self.corpus = corpus
        if corpus is None:
            log(f"{self.name}: no corpus, answering closed-book")
            return
        cfg, bf16 = self.model.cfg, use_bf16(ctx.opt("bf16", "auto"), ctx.opt("device", "cpu"))
        self.bf16 = bf16
        digest = weights_digest(hf, name)
        centre = bool(ctx.opt("centre", False))
        binding = {"kind": "imprag-key", "model": digest, "b": self.model.b, "l_max": cfg.l_max,
                   "corpus": corpus.digest(), "pooling": POOLING_BINDING[cfg.pooling], "bf16": bf16}
        weights = "" if hf.dtype == torch.float32 else str(hf.dtype).removeprefix("torch.")
        if weights:  # fp32 bindings stay as before, so existing indexes stay valid
            binding["weights"] = weights
        stem = (f"imprag-{digest[:12]}-b{self.model.b}-l{cfg.l_max}{'-bf16' if bf16 else ''}"
                f"{'-w' + weights if weights else ''}{'' if cfg.pooling == 'last' else '-' + cfg.pooling}")
        where = Path(ctx.cache_dir) / "index" / f"{stem}-{corpus.digest()[:12]}"
        texts, batch = corpus.texts, self.batch_size * 4
        self.mu_q = None
        mu_k = 0.0
        if centre:  # harness.pooling: the corpus mean feature, projected to a mean query and a mean key
            attn = self.model.runner.layer(self.model.b).self_attn
            self.mu_q, mu_k, binding = corpus_centring(
                where.with_name(f"{where.name}-centre"), corpus,
                lambda t: self.model.embed_passages(t, batch, bf16, features=True), binding,
                (attn.q_proj, attn.k_proj), self.model.group_mean, f"corpus mean of layer {self.model.b}'s input")
            where = where.with_name(f"{where.name}-centred")
        self.index = build_index(where, corpus.ids,
                                 lambda s, e: self.model.embed_passages(texts[s:e], batch, bf16) - mu_k,
                                 binding, factory=ctx.opt("index", "auto"),
                                 desc=f"indexing corpus with layers 0..{self.model.b} of {name}")

    def retrieve(self, e_q, k: int) -> list[list[str]]:
        """Top-k passage ids for query embeddings [B, d] (FAISS inner product; less the corpus mean query
        with `centre`)."""
        return self.index.search(e_q if self.mu_q is None else e_q - self.mu_q, k)[1]

    def passage_texts(self, ids: list[str]) -> list[str]:
        """Passage texts as the index embedded them (title line, then text)."""
        return [p.as_text() for p in self.corpus.get_many(ids)]

    def costs(self) -> dict:
        """Sizes for harness.costs: one LM retrieves and reads (no separate retriever), its layer-b key index,
        and the seconds spent in each stage of generation so far."""
        from imprag_bench.harness.costs import faiss_bytes, unique_params

        return {"params_reader": unique_params(self.model.lm), "params_retriever": 0,
                "index_bytes": faiss_bytes(self.index), "stage_seconds": dict(self.timings)}

    def predict(self, examples: list[Example]) -> list[Prediction]:
        inputs = [lm_input(ex, self.ctx.demos.get(ex.task, [])) for ex in examples]
        res = self.model.generate(inputs, self.retrieve if self.index is not None else None, self.passage_texts,
                                  k=self.k, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        for s, v in res.timings.items():
            self.timings[s] += v
        self.n_predicted += len(examples)
        return [Prediction(ex.id, text, retrieved=ids, query=None)
                for ex, text, ids in zip(examples, res.texts, res.retrieved)]


@SYSTEMS.register("imprag")
@declare(
    checkpoint=Option(str, None, "an ImpRAG folder (from `imprag-bench train imprag`), used instead of `model`",
                      folder=True),
    b=Option(int, None, "last layer of the bottom (retrieval) group; default from the checkpoint or model", min=0),
    t=Option(int, None, "last layer of the middle (reading) group; default from the checkpoint or model", min=0),
    l_max=Option(int, 128, "passage length in tokens", min=1),
    passage_encoding=Option(str, "concat", "read the k passages as one sequence or each on its own",
                            choices=("concat", "independent")),
    read_top_layers=Option(bool, False, "read passages in the top layers too (t = N-1)"),
    pooling=POOLING_OPTION,
    centre=CENTRE_OPTION,
    bf16=BF16,
    index=Option(str, "auto", "FAISS index factory string, e.g. IVF65536_HNSW32,PQ64; auto: Flat up to 1M "
                 "passages, compressed above (harness.index.auto_factory)"),
)
def make(options: dict) -> ImpRAGSystem:
    """ImpRAG (implicit queries from layer b; passages read as KV in layers b..t)."""
    return ImpRAGSystem(options)
