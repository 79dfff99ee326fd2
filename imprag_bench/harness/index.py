"""FAISS vector indexes built in shards on disk, bound by a manifest to what produced the vectors.

`build_index` encodes the corpus shard by shard (each shard saved atomically as .npy, so an interrupted
build resumes at the first missing shard), then builds a FAISS index (flat inner product by default, any
`faiss.index_factory` string such as "IVF256,PQ16" by option) and writes a manifest. The manifest's
`binding` records what the vectors depend on (model checkpoint digest, layer, corpus digest, pooling...);
`load_index` refuses an index whose binding differs from what the caller expects, naming the fields. The
vectors are kept apart from the indexes built from them (one file per factory, its size recorded): a new
factory trains from the stored vectors, and a damaged index or shard is rebuilt, never re-encoded whole.

Memory: shards are written through a memmap a chunk of passages at a time, and the FAISS index is trained
on a bounded sample and filled shard by shard from memmaps, so a build never holds the corpus's vectors in
RAM beyond what the index itself stores. Under torchrun the shards are split across ranks (see
`build_index` and docs/scale-out.md).
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from imprag_bench.harness import dist
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import WRITE_ERRNOS, atomic_write, atomic_write_bytes

MANIFEST = "manifest.json"
AUTO_FLAT_MAX = 1_000_000  # `factory="auto"`: exact (Flat) search up to this many passages, compressed above
NPROBE = 32  # inverted lists an IVF index visits per query (faiss's default, 1, loses most neighbours)


class VectorIndex:
    """A loaded index: FAISS search returning corpus passage ids."""

    def __init__(self, index, ids: list[str], manifest: dict):
        import faiss

        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = min(NPROBE, ivf.nlist)
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


def _shard_path(out: Path, s: int) -> Path:
    return out / f"shard_{s:05d}.npy"


def _encode_shard(path: Path, start: int, end: int, encode, chunk: int, bar) -> None:
    """Encode passages [start, end) in calls of `chunk` passages, each written straight into a memmapped
    .npy beside `path` (only one chunk is ever in RAM), then renamed onto `path` (atomic: a killed build
    leaves no half shard). The bar moves after every call, so it moves every few seconds on any corpus."""
    tmp = path.with_name(f".{path.name}.tmp")
    mm = None
    for s in range(start, end, chunk):
        e = min(end, s + chunk)
        vecs = np.ascontiguousarray(encode(s, e), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != e - s:
            raise RuntimeError(f"encoder returned {vecs.shape[0]} vectors for {e - s} passages")
        if mm is None:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(end - start, vecs.shape[1]))
            _reserve(tmp)
        elif vecs.shape[1] != mm.shape[1]:
            raise RuntimeError(f"encoder returned {vecs.shape[1]}-d vectors after {mm.shape[1]}-d ones")
        mm[s - start:e - start] = vecs
        bar.update(e - s)
    mm.flush()
    del mm
    os.replace(tmp, path)


def _reserve(path: Path) -> None:
    """Allocate a memmapped file's blocks now: on a full disk writing into a sparse memmap kills the process
    (SIGBUS); this turns it into an OSError naming the file."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(path))
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # else the file system cannot preallocate: write as before
                raise OSError(e.errno, e.strerror, str(path)) from None


def _train_sample(paths: list[Path], n: int, n_train: int, seed: int) -> np.ndarray:
    """The seeded training sample (sorted row numbers over the whole corpus), gathered shard by shard
    from memmaps: RAM holds the sample only, never the corpus's vectors."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, min(n, n_train), replace=False))
    sample, lo, filled = None, 0, 0
    for path in paths:
        mm = np.load(path, mmap_mode="r")
        hi = lo + mm.shape[0]
        rows = pick[(pick >= lo) & (pick < hi)] - lo
        if sample is None:
            sample = np.empty((len(pick), mm.shape[1]), dtype=np.float32)
        sample[filled:filled + len(rows)] = mm[rows]
        filled += len(rows)
        lo = hi
        del mm
    return sample


def _make_faiss(paths: list[Path], n: int, factory: str, seed: int, n_train: int, desc: str):
    """Train (if the factory needs it) on a seeded sample, then add every shard in order, one memmapped
    shard at a time. Peak RAM: the index itself + the training sample + one shard."""
    import faiss

    d = np.load(paths[0], mmap_mode="r").shape[1]
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        sample = _train_sample(paths, n, n_train, seed)
        index.train(sample)
        del sample
    if isinstance(index, faiss.IndexFlatCodes):
        # reserve the final size once (resize up, then back to 0 keeps the capacity): appending shard by
        # shard would otherwise reallocate the growing buffer, briefly holding old + new copies
        index.codes.resize(n * index.code_size)
        index.codes.resize(0)
    bar = tqdm(total=n, desc=f"{desc}: adding to {factory}", unit="passage", dynamic_ncols=True)
    for path in paths:
        mm = np.load(path, mmap_mode="r")
        index.add(np.ascontiguousarray(mm))
        bar.update(mm.shape[0])
        del mm
    bar.close()
    return index


def auto_factory(n: int, dim: int) -> str:
    """The factory `"auto"` stands for: Flat up to AUTO_FLAT_MAX passages; above, an IVF index with an HNSW
    coarse quantiser and 8-bit PQ codes of 64 sub-vectors (or the most that divide `dim`), about 16 sqrt(n)
    lists (21M passages: 65,536, the paper's dense index). Chosen by benchmarks/bench_index_recall.py: on
    MiniLM vectors of the mini-KILT corpus PQ64 kept 0.737 of Flat's top 10 and 0.718 answer recall@10 (Flat
    0.742) at 72 bytes a passage (Flat: 1,536); PQ32 and PQ48 lost 0.04-0.06 answer recall more."""
    if n <= AUTO_FLAT_MAX:
        return "Flat"
    nlist = 2 ** round(math.log2(16 * math.sqrt(n)))
    m = next(m for m in (64, 48, 32, 24, 16, 8, 4, 2, 1) if dim % m == 0)
    return f"IVF{nlist}_HNSW32,PQ{m}"


def _known_dim(out: Path, binding: dict) -> int | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("dim") if manifest.get("binding") == binding else None


def index_file(factory: str) -> str:
    """The file one FAISS factory's index of a folder's vectors is saved as (`index-IVF256_PQ16.faiss`)."""
    return "index-" + (re.sub(r"[^A-Za-z0-9]+", "_", factory).strip("_") or "Flat") + ".faiss"


def _vectors_key(binding: dict, n: int, shard_size: int) -> dict:
    return {"binding": binding, "n": n, "shard_size": shard_size}


def _stored_vectors_key(progress: Path) -> dict | None:
    try:
        old = json.loads(progress.read_text())
    except (OSError, ValueError):
        return None
    old.pop("factory", None)  # folders of earlier versions bound the vectors to the factory too
    return old


def _shard_ok(path: Path, rows: int) -> bool:
    """A completed shard reads back with its row count (a truncated or damaged file does not)."""
    try:
        return np.load(path, mmap_mode="r").shape[0] == rows
    except (OSError, ValueError):
        return False


def build_index(out_dir: str | Path, ids: list[str], encode: Callable[[int, int], np.ndarray],
                binding: dict, factory: str = "Flat", shard_size: int = 8192, desc: str = "indexing",
                seed: int = 0, chunk: int = 64, n_train: int = 500_000) -> VectorIndex:
    """Encode passages [0, len(ids)) shard by shard via `encode(start, end) -> float32 [end-start, d]`
    (called on at most `chunk` passages at a time), then build and save the FAISS index with its manifest.

    The folder holds the vectors (bound to `binding`, the ids and the shard size) and one index file per
    factory built from them: asking for another factory trains a new index from the stored vectors and never
    re-encodes; an index of that factory already there (its size as recorded, readable) is loaded instead.
    Encoding resumes at the first missing (or damaged) shard; a damaged index file is rebuilt from the shards.

    Under torchrun every rank calls this with the same arguments: shard s is encoded by rank s % world;
    after a barrier rank 0 trains the index (on a seeded sample of at most `n_train` vectors; the paper
    trained its PQ codec on 500k) and adds the shards in order, then writes the manifest; the other ranks
    wait and load it. The shards, and so the index, equal a one-process build's."""
    out = Path(out_dir)
    vectors = _vectors_key(binding, len(ids), shard_size)
    if factory == "auto":  # needs the vectors' size: from the manifest, or after encoding
        dim = _known_dim(out, binding)
        factory = auto_factory(len(ids), dim) if dim else None
    ready, why = None, None
    if factory is not None and (out / MANIFEST).exists():
        try:
            ready = load_index(out, binding, factory)
            if ready.ids != list(ids):
                ready = None
        except UserError as e:
            why = str(e)  # another binding, no index of this factory yet, or a damaged file: build below
    if not dist.any_rank(ready is None):  # collective: nobody changes the folder before every rank looked
        return ready
    from imprag_bench.harness.locks import folder_lock

    with folder_lock(out, "index folder"):  # one builder per index folder
        return _build(out, ids, encode, binding, factory, shard_size, desc, seed, chunk, n_train, vectors, why)


def _build(out: Path, ids, encode, binding: dict, factory, shard_size: int, desc: str, seed: int, chunk: int,
           n_train: int, vectors: dict, why) -> VectorIndex:
    import faiss

    from imprag_bench.harness.assets import log

    rank, size = dist.rank_world()
    progress = out / "progress.json"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if progress.exists() and _stored_vectors_key(progress) != vectors:
            for p in out.glob("shard_*.npy"):
                p.unlink()
            (out / MANIFEST).unlink(missing_ok=True)  # its indexes are of other vectors
        elif why and "damaged" in why:
            log(f"{why}; rebuilding it from the stored vectors")
        atomic_write_bytes(progress, json.dumps(vectors, sort_keys=True).encode())
    dist.barrier()
    n_shards = (len(ids) + shard_size - 1) // shard_size
    spans = [(s * shard_size, min(len(ids), (s + 1) * shard_size)) for s in range(n_shards)]
    mine = [s for s in range(n_shards) if s % size == rank]
    bar = tqdm(total=sum(e - b for b, e in (spans[s] for s in mine)),
               desc=desc if size == 1 else f"{desc} (rank {rank}/{size})", unit="passage", dynamic_ncols=True)
    for s in mine:
        path = _shard_path(out, s)
        if path.exists() and _shard_ok(path, spans[s][1] - spans[s][0]):
            bar.update(spans[s][1] - spans[s][0])
        else:
            if path.exists():
                log(f"{path}: damaged vector shard; encoding it again")
            _encode_shard(path, *spans[s], encode, chunk, bar)
    bar.close()
    dist.barrier()
    if factory is None:
        factory = auto_factory(len(ids), int(np.load(_shard_path(out, 0), mmap_mode="r").shape[1]))
    if rank == 0:
        index = _make_faiss([_shard_path(out, s) for s in range(n_shards)], len(ids), factory, seed, n_train, desc)
        name = index_file(factory)  # through a Python file: a full disk is an OSError naming it, never a crash
        atomic_write(out / name, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)), binary=True)
        atomic_write_bytes(out / "ids.txt", "\n".join(ids).encode())
        old = _read_manifest(out) if (out / MANIFEST).exists() else {}
        indexes = {**(old.get("indexes", {}) if old.get("binding") == binding else {}),
                   factory: {"file": name, "bytes": (out / name).stat().st_size, "ntotal": int(index.ntotal)}}
        manifest = {**vectors, "dim": int(index.d), "factory": factory, "indexes": indexes}
        atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    dist.barrier()
    if rank == 0:
        return VectorIndex(index, list(ids), manifest)
    return load_index(out, binding, factory)


def _read_manifest(out: Path) -> dict:
    mpath = out / MANIFEST
    if not mpath.exists():
        raise UserError(f"{out}: no index manifest ({MANIFEST}); build the index first")
    try:
        return json.loads(mpath.read_text())
    except ValueError as e:
        raise UserError(f"{mpath}: unreadable manifest ({e})") from None


def load_index(out_dir: str | Path, binding: dict, factory: str | None = None) -> VectorIndex:
    """Load the index of `factory` (default: the last one built) from a folder, refusing it (UserError, one
    message naming the file) if the manifest's binding differs from `binding`, if there is no index of that
    factory, or if its file is damaged (not the size recorded when it was completed, or unreadable)."""
    import faiss

    out = Path(out_dir)
    manifest = _read_manifest(out)
    have = manifest.get("binding", {})
    diff = sorted(k for k in set(have) | set(binding) if have.get(k) != binding.get(k))
    if diff:
        detail = "; ".join(f"{k}: index has {have.get(k)!r}, expected {binding.get(k)!r}" for k in diff)
        raise UserError(f"{out}: index was built for a different setup ({detail})")
    factory = factory or manifest.get("factory", "Flat")
    entry = manifest.get("indexes", {}).get(factory)
    if entry is None and manifest.get("factory") == factory:  # a folder of an earlier version: one index.faiss
        entry = {"file": "index.faiss", "bytes": None, "ntotal": manifest["n"]}
    if entry is None:
        raise UserError(f"{out}: no {factory} index among {sorted(manifest.get('indexes', {}))}")
    path = out / entry["file"]
    if not path.exists() or (entry["bytes"] is not None and path.stat().st_size != entry["bytes"]):
        raise UserError(f"{path}: damaged index ({path.stat().st_size if path.exists() else 'no'} bytes, "
                        f"{entry['bytes']} recorded)")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise UserError(f"{path}: damaged index (faiss cannot read it: {str(e).splitlines()[0]})") from None
    ids = (out / "ids.txt").read_text().split("\n")
    if index.ntotal != len(ids) or len(ids) != manifest["n"]:
        raise UserError(f"{path}: damaged index ({index.ntotal} vectors, {len(ids)} ids, manifest n={manifest['n']})")
    return VectorIndex(index, ids, manifest)
