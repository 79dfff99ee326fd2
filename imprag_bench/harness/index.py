"""FAISS vector indexes built in shards on disk, bound by a manifest to what produced the vectors.

`build_index` encodes the corpus shard by shard (each shard saved atomically as .npy, so an interrupted
build resumes at the first missing shard), then builds a FAISS index (flat inner product by default, any
`faiss.index_factory` string such as "IVF256,PQ16" by option) and writes a manifest. The manifest's
`binding` records what the vectors depend on (model checkpoint digest, layer, corpus digest, pooling...);
`load_index` refuses an index whose binding differs from what the caller expects, naming the fields.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write, atomic_write_bytes

MANIFEST = "manifest.json"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr), binary=True)


class VectorIndex:
    """A loaded index: FAISS search returning corpus passage ids."""

    def __init__(self, index, ids: list[str], manifest: dict):
        self.index = index
        self.ids = ids
        self.manifest = manifest

    @property
    def dim(self) -> int:
        return self.index.d

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k by inner product: (scores [n, k], passage ids per query)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"query vectors must be [n, {self.dim}], got {q.shape}")
        k = min(k, len(self.ids))
        scores, idx = self.index.search(q, k)
        return scores, [[self.ids[j] for j in row if j >= 0] for row in idx]


def _make_faiss(vectors: np.ndarray, factory: str, seed: int):
    import faiss

    d = vectors.shape[1]
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        n_train = min(len(vectors), 500_000)  # the paper trained its PQ codec on 500k passages
        index.train(vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))])
    index.add(vectors)
    return index


def build_index(out_dir: str | Path, ids: list[str], encode: Callable[[int, int], np.ndarray],
                binding: dict, factory: str = "Flat", shard_size: int = 8192, desc: str = "indexing",
                seed: int = 0) -> VectorIndex:
    """Encode passages [0, len(ids)) shard by shard via `encode(start, end) -> float32 [end-start, d]`,
    then build and save the FAISS index with its manifest. Resumes from completed shards whose binding
    matches; an existing complete index with the same binding is loaded instead of rebuilt."""
    import faiss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {"binding": binding, "n": len(ids), "factory": factory, "shard_size": shard_size}
    if (out / MANIFEST).exists():
        try:
            return load_index(out, binding)
        except UserError:
            pass  # different binding or factory: rebuild below
    progress = out / "progress.json"
    if progress.exists() and json.loads(progress.read_text()) != full:
        for p in out.glob("shard_*.npy"):
            p.unlink()
    atomic_write_bytes(progress, json.dumps(full, sort_keys=True).encode())
    n_shards = (len(ids) + shard_size - 1) // shard_size
    bar = tqdm(total=len(ids), desc=desc, unit="passage", dynamic_ncols=True)
    for s in range(n_shards):
        start, end = s * shard_size, min(len(ids), (s + 1) * shard_size)
        path = out / f"shard_{s:05d}.npy"
        if not path.exists():
            vecs = np.ascontiguousarray(encode(start, end), dtype=np.float32)
            if vecs.shape[0] != end - start:
                raise RuntimeError(f"encoder returned {vecs.shape[0]} vectors for {end - start} passages")
            _save_npy(path, vecs)
        bar.update(end - start)
    bar.close()
    vectors = np.concatenate([np.load(out / f"shard_{s:05d}.npy") for s in range(n_shards)])
    index = _make_faiss(vectors, factory, seed)
    tmp = out / ".index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, out / "index.faiss")
    atomic_write_bytes(out / "ids.txt", "\n".join(ids).encode())
    manifest = {**full, "dim": int(vectors.shape[1])}
    atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return VectorIndex(index, list(ids), manifest)


def load_index(out_dir: str | Path, binding: dict) -> VectorIndex:
    """Load an index, refusing it (UserError) if its manifest's binding differs from `binding`."""
    import faiss

    out = Path(out_dir)
    mpath = out / MANIFEST
    if not mpath.exists():
        raise UserError(f"{out}: no index manifest ({MANIFEST}); build the index first")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as e:
        raise UserError(f"{mpath}: unreadable manifest ({e})") from None
    have = manifest.get("binding", {})
    diff = sorted(k for k in set(have) | set(binding) if have.get(k) != binding.get(k))
    if diff:
        detail = "; ".join(f"{k}: index has {have.get(k)!r}, expected {binding.get(k)!r}" for k in diff)
        raise UserError(f"{out}: index was built for a different setup ({detail})")
    ids = (out / "ids.txt").read_text().split("\n")
    index = faiss.read_index(str(out / "index.faiss"))
    if index.ntotal != len(ids) or len(ids) != manifest["n"]:
        raise UserError(f"{out}: index is incomplete ({index.ntotal} vectors, {len(ids)} ids, manifest n={manifest['n']})")
    return VectorIndex(index, ids, manifest)
