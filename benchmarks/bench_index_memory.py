"""Peak RSS of `build_index` at two corpus sizes: does memory stay flat as the corpus grows?

A synthetic encoder returns seeded random 1024-d float32 vectors (no model: this measures the index
builder, not an encoder). Each (factory, size) runs in a fresh process, so its peak RSS (ru_maxrss) is its
own; the baseline is the RSS after imports, before the build. The FAISS index itself lives in RAM (Flat
stores n x d x 4 bytes; IVF-PQ n x (code bytes + 8-byte id)), so the column that must stay flat is
"peak - baseline - index": everything the build holds besides the index (one encoded chunk, one memmapped
shard, the training sample). --mode concat runs the pre-streaming build (all shards concatenated in RAM,
then added) for comparison.

    python benchmarks/bench_index_memory.py --json results/bench_index_memory.json

Defaults are sized for a shared 2-core box (about 2 minutes): 100k and 400k passages, a 4-bit PQ (16
centroids per sub-quantizer: k-means costs n_train x centroids x d x 2 x 25 iterations, so 8-bit PQ64 on
10k points took 146 s here) and one thread (--threads). Memory per vector does not depend on these choices.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    """Current resident set size (VmRSS) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(factory: str, n: int, dim: int, mode: str, n_train: int) -> dict:
    """One build in this process; returns its figures."""
    import faiss
    import numpy as np

    from imprag_bench.harness import index as ix

    base = rss_mb()

    def encode(s, e):
        return np.random.default_rng(s).standard_normal((e - s, dim), dtype=np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        ids = [str(i) for i in range(n)]
        t0 = time.perf_counter()
        if mode == "streaming":
            built = ix.build_index(tmp, ids, encode, {"kind": "bench"}, factory=factory, n_train=n_train)
        else:  # the pre-streaming path: shards written, then concatenated in RAM and added at once
            out = Path(tmp)
            for s in range(0, n, 8192):
                np.save(out / f"shard_{s // 8192:05d}.npy", encode(s, min(n, s + 8192)))
            vectors = np.concatenate([np.load(p) for p in sorted(out.glob("shard_*.npy"))])
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                rng = np.random.default_rng(0)
                index.train(vectors[np.sort(rng.choice(n, min(n, n_train), replace=False))])
            index.add(vectors)
            built = ix.VectorIndex(index, ids, {})
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before serializing (a copy)
        index_mb = faiss.serialize_index(built.index).nbytes / 2**20
        shards_mb = sum(p.stat().st_size for p in Path(tmp).glob("shard_*.npy")) / 2**20
    return {"factory": factory, "n": n, "dim": dim, "mode": mode, "n_train": n_train, "seconds": round(seconds, 1),
            "baseline_rss_mb": round(base), "peak_rss_mb": round(peak), "index_mb": round(index_mb),
            "shards_mb": round(shards_mb), "overhead_mb": round(peak - base - index_mb)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000])
    ap.add_argument("--factories", nargs="+", default=["Flat", "IVF16,PQ64x4"])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--mode", choices=["streaming", "concat"], default="streaming")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads of each build")
    ap.add_argument("--n-train", type=int, default=4096,
                    help="training sample cap (build_index's default is 500k, the paper's; smaller here for time)")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--child", nargs=2, metavar=("FACTORY", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.dim, args.mode, args.n_train)))
        return 0
    rows = []
    for factory in args.factories:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--child", factory, str(n), "--dim", str(args.dim),
                   "--mode", args.mode, "--n-train", str(args.n_train)]
            env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                    "MKL_NUM_THREADS")}}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode:
                sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"[bench] {factory} n={n}: done in {rows[-1]['seconds']} s", file=sys.stderr)
    cols = ["factory", "n", "mode", "seconds", "baseline_rss_mb", "peak_rss_mb", "index_mb", "shards_mb",
            "overhead_mb"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
