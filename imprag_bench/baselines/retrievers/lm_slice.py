"""RA-DIT-Llama's retriever: a separate copy of the LM's layers 0..b used as a bi-encoder.

The copy has the depth of ImpRAG's bottom group (b from the paper's layer table, or given) and ImpRAG's
pooling, computed here from Hugging Face's own forward (independently of imprag/, which it never imports):
- passage E_p: pre-RoPE key (layer b's input_layernorm, then k_proj) of the passage's last real token, the
  passage (title line + text, cut to l_max tokens) encoded alone from position 0;
- query E_q: pre-RoPE query (q_proj) at layer b of the query's last token, the query heads of each GQA group
  averaged -> [n_kv_heads * head_dim]; the query starts at position 0 (a separate retriever has no passages
  before the prompt; with pre-RoPE vectors and relative RoPE in layers 0..b-1 an offset changes nothing);
- `pooling: mean` (an ablation axis, never the paper's; harness.pooling): the mean over the real tokens of
  those states instead of the last token's; `centre` (evaluation) subtracts the corpus mean query and key;
- score: plain dot product (training may multiply it by a scale: RATrainConfig.score_scale, 1 as in Eq. 3
  or the attention's own 1/sqrt(head_dim) of the CPU recipe).
The copy keeps layers 0..b and runs them all (layer b's output is unused: one layer of waste buys HF's own
forward as the implementation). The index is built with bf16 autocast where asked (bound in the manifest).
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
from tqdm.auto import tqdm

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.index import build_index
from imprag_bench.harness.lm import pad, paper_layer_groups
from imprag_bench.harness.pooling import check as check_pooling, corpus_centring, describe, pool_tokens

RETRIEVER_FILE = "retriever.json"
POOLING = {"last": "last token; E_q = GQA-group-mean pre-RoPE q_proj, E_p = pre-RoPE k_proj, at layer b",
           "mean": "mean of the tokens; E_q = GQA-group-mean pre-RoPE q_proj, E_p = pre-RoPE k_proj, at layer b"}


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
    """Bi-encoder over a truncated LM copy (layers 0..b), ImpRAG's q/k pooling at layer b (last token, or the
    mean of the tokens with `pooling: mean`)."""

    def __init__(self, hf_slice, tok, l_max: int = 128, pooling: str = "last"):
        super().__init__()
        self.hf = hf_slice
        self.tok = tok
        self.b = hf_slice.config.num_hidden_layers - 1
        self.l_max = l_max
        self.pooling = check_pooling(pooling, "LMSliceEncoder")
        cfg = hf_slice.config
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.group = cfg.num_attention_heads // self.n_kv
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    @classmethod
    def from_lm(cls, hf_model, tok, b: int | None = None, l_max: int = 128,
                pooling: str = "last") -> "LMSliceEncoder":
        """A separate copy of layers 0..b of `hf_model` (default b: ImpRAG's bottom-group boundary)."""
        if b is None:
            b = paper_layer_groups(hf_model.config.num_hidden_layers)[0]
        return cls(truncate_copy(hf_model, b + 1), tok, l_max, pooling)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", pooling: str | None = None) -> "LMSliceEncoder":
        """The copy `save` wrote; `pooling` overrides the one it was trained with (an evaluation ablation)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        meta = json.loads((Path(folder) / RETRIEVER_FILE).read_text())
        tok = AutoTokenizer.from_pretrained(folder)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        return cls(hf, tok, int(meta.get("l_max", 128)), pooling or meta.get("pooling_mode", "last"))

    def save(self, folder: str | Path, state: dict | None = None) -> None:
        """The copy as a folder `LMSliceEncoder.load` reads; `state`: the weights to write (a training loop's
        gathered full state dict), default the model's own."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(folder, state_dict=state)
        self.tok.save_pretrained(folder)
        meta = {"kind": "lm-slice", "b": self.b, "l_max": self.l_max, "pooling": POOLING[self.pooling],
                "pooling_mode": self.pooling}
        (folder / RETRIEVER_FILE).write_text(json.dumps(meta, indent=1))

    @property
    def module(self) -> nn.Module:
        """What training updates."""
        return self.hf

    @property
    def dim(self) -> int:
        return self.n_kv * self.head_dim

    @property
    def score_scale(self) -> float:
        """The attention's own scale 1/sqrt(head_dim) (raw |s| ~ 10 at init); training uses it only where its
        config says so (`TrainableRetriever(score_scale=...)`, RATrainConfig.score_scale)."""
        return self.head_dim ** -0.5

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        return [list(x) for x in self.tok(list(texts), add_special_tokens=False)["input_ids"]] if texts else []

    def _layer_b_input(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Layer b's normalised input at each sequence's last real token, or its mean over the real tokens
        (`pooling: mean`); positions count real tokens only."""
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.hf.model(input_ids=ids, attention_mask=mask.long(), position_ids=pos, use_cache=False,
                            output_hidden_states=True)
        h = out.hidden_states[self.b]  # the output of layer b-1 = the input of layer b
        return pool_tokens(self.hf.model.layers[self.b].input_layernorm(h), mask, self.pooling)

    def passage_features(self, texts: list[str]) -> Tensor:
        """Layer b's normalised inputs [n, hidden] of the passages' last tokens (E_p = k_proj of them):
        passages cut to l_max tokens, right-padded, from position 0."""
        toks = [s[: self.l_max] or [self.pad_id] for s in self._token_ids(texts)]
        ids, mask = pad(toks, self.pad_id, "right")
        return self._layer_b_input(ids.to(self.device), mask.to(self.device))

    def query_features(self, texts: list[str]) -> Tensor:
        """Layer b's normalised inputs [n, hidden] of the queries' last tokens (E_q = pooled q_proj of them);
        queries are truncated to their last 512 tokens, left-padded."""
        toks = [s[-512:] or [self.pad_id] for s in self._token_ids(texts)]
        ids, mask = pad(toks, self.pad_id, "left")
        return self._layer_b_input(ids.to(self.device), mask.to(self.device))

    @property
    def projections(self) -> tuple[nn.Module, nn.Module]:
        """Layer b's q_proj and k_proj (what stage 0 / refit fit)."""
        attn = self.hf.model.layers[self.b].self_attn
        return attn.q_proj, attn.k_proj

    def group_mean(self, q: Tensor) -> Tensor:
        """[n, H_q*d] query heads -> [n, H_kv*d], averaging the heads of each GQA group."""
        return q.view(q.shape[0], self.n_kv, self.group, self.head_dim).mean(2).reshape(q.shape[0], -1)

    def passage_embed(self, texts: list[str]) -> Tensor:
        """E_p [n, d] with gradients: pre-RoPE k_proj of `passage_features`."""
        return self.projections[1](self.passage_features(texts))

    def query_embed(self, texts: list[str]) -> Tensor:
        """E_q [n, d] with gradients: GQA-group-mean pre-RoPE q_proj of `query_features`."""
        return self.group_mean(self.projections[0](self.query_features(texts)))

    @torch.no_grad()
    def _encode(self, fn, texts: list[str], batch_size: int, bf16: bool, width: int | None = None,
                desc: str | None = None) -> np.ndarray:
        out = np.zeros((len(texts), width or self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches: less padding
        bar = tqdm(total=len(texts), desc=desc, unit="text", mininterval=2.0, disable=desc is None)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                out[idx] = fn([texts[i] for i in idx]).float().cpu().numpy()
            bar.update(len(idx))
        bar.close()
        return out

    def encode_features(self, texts: list[str], kind: str, batch_size: int = 32, bf16: bool = False) -> np.ndarray:
        """Layer-b features [n, hidden] of queries (`kind` "query") or passages ("passage"), no gradient."""
        fn = {"query": self.query_features, "passage": self.passage_features}[kind]
        return self._encode(fn, texts, batch_size, bf16, self.hf.config.hidden_size, f"slice layer-b {kind} features")

    def encode_passages(self, texts: list[str], batch_size: int = 32, bf16: bool = False) -> np.ndarray:
        return self._encode(self.passage_embed, texts, batch_size, bf16)

    def encode_queries(self, texts: list[str], batch_size: int = 32, bf16: bool = False) -> np.ndarray:
        return self._encode(self.query_embed, texts, batch_size, bf16)


class LMSliceRetriever:
    """Index the corpus with a (fine-tuned) LM-slice folder and search with explicit query text."""

    name = "lm-slice"

    def __init__(self, corpus: Corpus, cache_dir: Path, folder: str | Path, factory: str = "auto",
                 device: str = "cpu", bf16: bool = True, encoder: LMSliceEncoder | None = None,
                 pooling: str | None = None, centre: bool = False):
        from imprag_bench.harness.dense import folder_digest

        self.corpus = corpus
        self.encoder = encoder or LMSliceEncoder.load(folder, device, pooling)
        self.encoder.hf.eval()
        enc = self.encoder
        digest = folder_digest(folder)
        self.bf16 = bf16
        binding = {"kind": "lm-slice", "weights": digest, "b": enc.b, "l_max": enc.l_max,
                   "pooling": POOLING[enc.pooling], "corpus": corpus.digest(), "bf16": bf16}
        mode = "" if enc.pooling == "last" and not centre else "-" + describe(enc.pooling, centre).replace("+", "-")
        where = Path(cache_dir) / "index" / f"lmslice-{digest[:12]}{'-bf16' if bf16 else ''}{mode}-{corpus.digest()[:12]}"
        texts = corpus.texts
        self.mu_q, mu_k = None, 0.0
        if centre:  # harness.pooling: the corpus mean feature, projected to a mean query and a mean key
            self.mu_q, mu_k, binding = corpus_centring(
                where.with_name(f"{where.name}-features"), corpus,
                lambda t: enc.encode_features(t, "passage", 32, bf16), binding, enc.projections, enc.group_mean,
                f"corpus mean of layer {enc.b}'s input (copy)")
        self.index = build_index(where, corpus.ids, lambda s, e: enc.encode_passages(texts[s:e], 32, bf16) - mu_k,
                                 binding, factory=factory, desc=f"indexing corpus with layers 0..{enc.b} (copy)")

    def search(self, queries: list[str], k: int) -> list[list[str]]:
        e_q = self.encoder.encode_queries(queries, bf16=self.bf16)
        return self.index.search(e_q if self.mu_q is None else e_q - self.mu_q, k)[1]

    def sizes(self) -> tuple[int, int]:
        """(the weights it runs: embeddings + layers 0..b, the FAISS index's bytes)."""
        from imprag_bench.harness.costs import faiss_bytes, unique_params

        hf = self.encoder.hf.model
        return unique_params(hf.embed_tokens) + unique_params(hf.layers), faiss_bytes(self.index)
