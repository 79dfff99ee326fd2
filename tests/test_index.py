"""FAISS index build/load: exact top-k, resume from shards, and refusal of a mismatched binding."""
import numpy as np
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.index import build_index, load_index


def _vectors(n=50, d=8):
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def test_flat_index_matches_brute_force(tmp_path):
    v = _vectors()
    ids = [f"p{i}" for i in range(len(v))]
    ix = build_index(tmp_path, ids, lambda s, e: v[s:e], {"model": "m"}, shard_size=16)
    q = _vectors(5)[:3]
    scores, got = ix.search(q, 4)
    want = np.argsort(-(q @ v.T), axis=1)[:, :4]
    assert got == [[ids[j] for j in row] for row in want]
    assert np.allclose(scores, np.take_along_axis(q @ v.T, want, 1), atol=1e-5)


def test_build_resumes_from_completed_shards(tmp_path):
    v = _vectors()
    ids = [f"p{i}" for i in range(len(v))]
    calls = []

    def failing(s, e):
        calls.append(s)
        if s >= 32:
            raise KeyboardInterrupt
        return v[s:e]
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path, ids, failing, {"model": "m"}, shard_size=16)
    calls.clear()
    build_index(tmp_path, ids, lambda s, e: (calls.append(s), v[s:e])[1], {"model": "m"}, shard_size=16)
    assert calls == [32, 48]  # shards 0 and 1 were kept


def test_mismatched_binding_is_refused(tmp_path):
    v = _vectors()
    build_index(tmp_path, [str(i) for i in range(len(v))], lambda s, e: v[s:e], {"model": "a", "b": 7})
    with pytest.raises(UserError, match=r"b: index has 7, expected 8"):
        load_index(tmp_path, {"model": "a", "b": 8})
    with pytest.raises(UserError, match="no index manifest"):
        load_index(tmp_path / "missing", {})
