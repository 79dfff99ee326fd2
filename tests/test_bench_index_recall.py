"""The index-recall benchmark's core on small random vectors (no model): Flat against itself is exact,
a compressed index reports a recall in [0, 1] with fewer bytes than Flat, and IVF rows follow --nprobe.
("np": no polysemous training, ~20 s for PQ8 on this box, irrelevant to what is checked.)"""
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_index_recall", ROOT / "benchmarks" / "bench_index_recall.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flat_recall_is_one_and_ivf_pq_is_smaller_with_recall_in_unit_interval(tmp_path):
    import faiss

    faiss.omp_set_num_threads(1)
    bench = _bench()
    rng = np.random.default_rng(0)
    v = rng.standard_normal((2000, 32), dtype=np.float32)
    q = rng.standard_normal((40, 32), dtype=np.float32)
    ids = [f"p{i}" for i in range(len(v))]
    calls = []
    rows, _ = bench.measure(tmp_path, ids, lambda s, e: (calls.append(s), v[s:e])[1], {"kind": "test"}, q,
                            ["Flat", "IVF16,PQ8np"], nprobes=(2, 16), answer_hit=lambda i, got: float(i % 2))
    flat, *ivf = rows
    assert flat["factory"] == "Flat" and flat["nprobe"] is None and flat["recall_vs_flat"] == 1.0
    assert [r["nprobe"] for r in ivf] == [2, 16]
    for r in ivf:
        assert 0.0 <= r["recall_vs_flat"] <= 1.0 and r["bytes"] < flat["bytes"]
        assert r["marginal_bytes_per_passage"] < flat["marginal_bytes_per_passage"]
    assert ivf[1]["recall_vs_flat"] >= ivf[0]["recall_vs_flat"]  # all 16 lists probed: PQ error only
    assert flat["answer_recall"] == 0.5
    assert flat["marginal_bytes_per_passage"] == 32 * 4  # the fixed part (an empty Flat) is the header only
    assert len(calls) == len(range(0, 2000, 64))  # encoded once, the IVF index trained from the stored shards
    assert "| Flat | - | 1.0 |" in bench.table(rows)
