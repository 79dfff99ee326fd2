"""RA-DIT-Llama's retriever: a separate copy of the LM's layers 0..b used as a bi-encoder.

The copy is the same depth as ImpRAG's bottom group (b from `imprag_bench.imprag.model.default_layer_groups`, or given)
and embeds exactly as ImpRAG does, reusing `imprag_bench.imprag.model.ImpRAGModel` on the truncated copy:
- passage E_p: pre-RoPE key (input_layernorm, k_proj) at layer b of the passage's last real token, the
  passage (title line + text, cut to l_max tokens) encoded alone from position 0;
- query E_q: pre-RoPE query (q_proj) at layer b of the query's last token, the query heads of each GQA group
  averaged -> [n_kv_heads * head_dim]; the query starts at position 0 (a separate retriever has no passages
  before the prompt; with pre-RoPE vectors and relative RoPE inside layers 0..b-1 the offset changes nothing);
- score: plain dot product (training divides by `scale` = sqrt(head_dim), see `score_scale`).
The index is built with bf16 autocast by default (option `bf16`, ~3x faster on AMX CPUs; bound in the
index manifest), queries are embedded the same way.
The copy is saved as an ordinary HF causal-LM folder with num_hidden_layers = b + 1 plus `retriever.json`;
its weights never alias the reader's.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.index import build_index
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel, default_layer_groups, pad

RETRIEVER_FILE = "retriever.json"
POOLING = "last token; E_q = GQA-group-mean pre-RoPE q_proj, E_p = pre-RoPE k_proj, at layer b"


def truncate_copy(hf_model, n_keep: int):
    """A deep copy of a HF Llama-family causal LM keeping only decoder layers 0..n_keep-1."""
    m = copy.deepcopy(hf_model)
    m.model.layers = nn.ModuleList(list(m.model.layers)[:n_keep])
    m.config.num_hidden_layers = n_keep
    if getattr(m.config, "layer_types", None):
        m.config.layer_types = list(m.config.layer_types)[:n_keep]
    for p in m.parameters():
        p.requires_grad_(True)
    return m


class LMSliceEncoder(nn.Module):
    """Bi-encoder over a truncated LM copy (layers 0..b), ImpRAG's pooling."""

    def __init__(self, hf_slice, tok, l_max: int = 128):
        super().__init__()
        n = hf_slice.config.num_hidden_layers
        self.hf = hf_slice
        self.tok = tok
        self.imp = ImpRAGModel(hf_slice, tok, ImpRAGConfig(b=n - 1, t=n - 1, k=0, l_max=l_max))
        self.b = n - 1
        self.l_max = l_max

    @classmethod
    def from_lm(cls, hf_model, tok, b: int | None = None, l_max: int = 128) -> "LMSliceEncoder":
        """A separate copy of layers 0..b of `hf_model` (default b: ImpRAG's bottom-group boundary)."""
        if b is None:
            b = default_layer_groups(hf_model.config.num_hidden_layers)[0]
        return cls(truncate_copy(hf_model, b + 1), tok, l_max)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "LMSliceEncoder":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        meta = json.loads((Path(folder) / RETRIEVER_FILE).read_text())
        tok = AutoTokenizer.from_pretrained(folder)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        return cls(hf, tok, int(meta.get("l_max", 128)))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(folder)
        self.tok.save_pretrained(folder)
        meta = {"kind": "lm-slice", "b": self.b, "l_max": self.l_max, "pooling": POOLING}
        (folder / RETRIEVER_FILE).write_text(json.dumps(meta, indent=1))

    @property
    def head_dim(self) -> int:
        return self.imp.runner.head_dim

    @property
    def score_scale(self) -> float:
        """Training multiplies raw dot products by 1/sqrt(head_dim) (raw |s| ~ 10 at init)."""
        return self.head_dim ** -0.5

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def passage_embed(self, texts: list[str]) -> Tensor:
        """E_p [n, d] with gradients."""
        ids, mask = pad(self.imp.index_tokens(texts), self.imp.pad_id, "right")
        return self.imp.passage_embeddings(ids.to(self.device), mask.to(self.device))

    def query_embed(self, texts: list[str]) -> Tensor:
        """E_q [n, d] with gradients; queries are truncated to their last 512 tokens."""
        toks = [s[-512:] or [self.imp.pad_id] for s in self.imp.token_ids(texts)]
        ids, mask = pad(toks, self.imp.pad_id, "left")
        return self.imp.query_embeddings(ids.to(self.device), mask.to(self.device), 0)

    @torch.no_grad()
    def encode_passages(self, texts: list[str], batch_size: int = 32, bf16: bool = False) -> np.ndarray:
        return self.imp.embed_passages(texts, batch_size, bf16)

    @torch.no_grad()
    def encode_queries(self, texts: list[str], batch_size: int = 32, bf16: bool = False) -> np.ndarray:
        parts = []
        for s in range(0, len(texts), batch_size):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                parts.append(self.query_embed(texts[s:s + batch_size]).float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.imp.dim), np.float32)


class LMSliceRetriever:
    """Index the corpus with a (fine-tuned) LM-slice folder and search with explicit query text."""

    name = "lm-slice"

    def __init__(self, corpus: Corpus, cache_dir: Path, folder: str | Path, factory: str = "Flat",
                 device: str = "cpu", bf16: bool = True, encoder: LMSliceEncoder | None = None):
        from imprag_bench.baselines.retrievers.dense import folder_digest

        self.corpus = corpus
        self.encoder = encoder or LMSliceEncoder.load(folder, device)
        self.encoder.hf.eval()
        digest = folder_digest(folder)
        self.bf16 = bf16
        binding = {"kind": "lm-slice", "weights": digest, "b": self.encoder.b, "l_max": self.encoder.l_max,
                   "pooling": POOLING, "corpus": corpus.digest(), "bf16": bf16}
        where = Path(cache_dir) / "index" / f"lmslice-{digest[:12]}{'-bf16' if bf16 else ''}-{corpus.digest()[:12]}"
        texts = corpus.texts
        self.index = build_index(where, corpus.ids, lambda s, e: self.encoder.encode_passages(texts[s:e], 32, bf16),
                                 binding,
                                 factory=factory, desc=f"indexing corpus with layers 0..{self.encoder.b} (copy)")

    def search(self, queries: list[str], k: int) -> list[list[str]]:
        return self.index.search(self.encoder.encode_queries(queries, bf16=self.bf16), k)[1]
