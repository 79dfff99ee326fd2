"""Driver the torchrun tests launch (and call in one process for the reference): registers the toy
task/system, then either builds a deterministic index or runs the CLI.

    python tests/dist_driver.py index OUT      # Flat and IVF-PQ indexes of 1,000 seeded 16-d vectors
    python tests/dist_driver.py run CLI-ARGS   # `imprag-bench run ...` with tests/toy.py registered
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

N, D, SHARD, CHUNK = 1000, 16, 128, 50
FACTORIES = {"flat": "Flat", "ivfpq": "IVF4,PQ4x4"}


def vectors(n: int = N, d: int = D, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def build(out: Path) -> None:
    """Both indexes, plus (per rank) the encode calls made and the top-5 of 20 seeded queries."""
    from imprag_bench.harness import dist
    from imprag_bench.harness.index import build_index

    import os
    import time

    rank, _ = dist.rank_world()
    v, ids = vectors(), [f"p{i}" for i in range(N)]
    calls, res = [], {}
    delay = float(os.environ.get("INDEX_DELAY", "0"))  # seconds per encode call: lets a test kill a build midway
    for name, factory in FACTORIES.items():
        ix = build_index(out / name, ids, lambda s, e: (calls.append([name, s, e]), time.sleep(delay), v[s:e])[2],
                         {"kind": "test"},
                         factory=factory, shard_size=SHARD, chunk=CHUNK)
        scores, got = ix.search(vectors(20, seed=1), 5)
        res[name] = {"ids": got, "scores": scores.round(4).tolist()}
    (out / f"rank{rank}.json").write_text(json.dumps({"calls": calls, "search": res}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if sys.argv[1] == "index":
        build(Path(sys.argv[2]))
    else:
        import tests.toy  # noqa: F401  (registers the toy task and the echo system)
        from imprag_bench.harness.cli import main
        sys.exit(main(sys.argv[2:]))
