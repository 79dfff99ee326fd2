"""FAISS index build/load: exact top-k, resume from shards, and refusal of a mismatched binding."""
import numpy as np
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.index import AUTO_FLAT_MAX, NPROBE, auto_factory, build_index, load_index


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


def test_streaming_build_equals_in_memory_build_and_calls_encode_in_chunks(tmp_path):
    """The shard-by-shard build (memmapped sample, shards added one at a time) gives the index the
    in-RAM recipe gives: train on the seeded sorted sample of all vectors, then add them all at once."""
    import faiss

    v = _vectors(700, 16)
    ids = [f"p{i}" for i in range(len(v))]
    calls = []
    ix = build_index(tmp_path, ids, lambda s, e: (calls.append(e - s), v[s:e])[1], {"model": "m"},
                     factory="IVF4,PQ4x4", shard_size=128, chunk=50, n_train=300)
    assert max(calls) == 50 and sum(calls) == len(v)  # the progress bar moves per call
    ref = faiss.index_factory(16, "IVF4,PQ4x4", faiss.METRIC_INNER_PRODUCT)
    ref.train(v[np.sort(np.random.default_rng(0).choice(len(v), 300, replace=False))])
    ref.add(v)
    faiss.extract_index_ivf(ref).nprobe = 4  # a loaded IVF index searches min(NPROBE, nlist) lists
    assert faiss.serialize_index(ix.index).tobytes() == faiss.serialize_index(ref).tobytes()


def test_rank_helpers_outside_torchrun(monkeypatch):
    from imprag_bench.harness import dist

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert dist.rank_world() == (0, 1) and dist.is_main() and dist.any_rank(True) and not dist.any_rank(False)
    dist.barrier()  # a no-op: no process group is started
    assert dist.rank_device("cpu") == "cpu" and dist.rank_device(None) is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.rank_world() == (3, 4) and dist.rank_device("cpu") == "cpu"


def test_one_device_rule(monkeypatch):
    """`cuda` is the rank's own GPU; CUDA where there is none, or one `cuda:N` for many ranks, is refused."""
    import torch

    from imprag_bench.harness import dist
    from imprag_bench.harness.errors import UserError

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="device: 'cuda' was asked for, but this machine has no CUDA"):
        dist.rank_device("cuda")
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert dist.rank_device("cuda") == "cuda:0" and dist.rank_device("cuda:1") == "cuda:1"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.rank_device("cuda") == "cuda:1" and current == [0, 1]
    with pytest.raises(UserError, match="every rank on one GPU"):
        dist.rank_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(UserError, match="LOCAL_RANK 2 has no GPU"):
        dist.rank_device("cuda")


def _counting(v, calls):
    return lambda s, e: (calls.append((s, e)), v[s:e])[1]


def test_another_factory_trains_from_the_stored_vectors_and_both_stay(tmp_path):
    v, calls = _vectors(300, 16), []
    ids = [f"p{i}" for i in range(len(v))]
    flat = build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=64)
    assert sum(e - s for s, e in calls) == len(v)
    calls.clear()
    pq = build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, factory="IVF4,PQ4x4", shard_size=64,
                     n_train=200)
    assert calls == []  # the encoder is not called again
    assert pq.manifest["factory"] == "IVF4,PQ4x4" and type(pq.index).__name__ != type(flat.index).__name__
    again = build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=64)  # Flat: loaded
    assert calls == [] and again.index.ntotal == len(v) and again.manifest["factory"] == "IVF4,PQ4x4"
    assert sorted(load_index(tmp_path, {"model": "m"}, "Flat").manifest["indexes"]) == ["Flat", "IVF4,PQ4x4"]
    q = _vectors(3, 16)
    assert again.search(q, 5)[1] == flat.search(q, 5)[1]


def test_a_truncated_index_is_refused_by_name_and_rebuilt_from_the_vectors(tmp_path, capsys):
    v, calls = _vectors(), []
    ids = [f"p{i}" for i in range(len(v))]
    good = build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=16)
    path = tmp_path / "index-Flat.faiss"
    whole = path.read_bytes()
    path.write_bytes(whole[:100])
    with pytest.raises(UserError, match=r"index-Flat.faiss: damaged index \(100 bytes"):
        load_index(tmp_path, {"model": "m"})
    calls.clear()
    ix = build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=16)
    assert calls == [] and path.read_bytes() == whole
    assert ix.search(v[:2], 3)[1] == good.search(v[:2], 3)[1]
    assert "rebuilding it from the stored vectors" in capsys.readouterr().err


def test_a_damaged_shard_is_encoded_again_alone(tmp_path):
    v, calls = _vectors(), []
    ids = [f"p{i}" for i in range(len(v))]
    build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=16)
    whole = (tmp_path / "index-Flat.faiss").read_bytes()
    (tmp_path / "shard_00001.npy").write_bytes(b"\x93NUMPY broken")
    (tmp_path / "index-Flat.faiss").unlink()
    calls.clear()
    build_index(tmp_path, ids, _counting(v, calls), {"model": "m"}, shard_size=16)
    assert calls == [(16, 32)] and (tmp_path / "index-Flat.faiss").read_bytes() == whole


def test_auto_factory_is_flat_for_small_corpora_and_compressed_above(tmp_path):
    v, calls = _vectors(), []
    ix = build_index(tmp_path, [f"p{i}" for i in range(len(v))], _counting(v, calls), {"model": "m"}, factory="auto")
    assert ix.manifest["factory"] == "Flat" and list(ix.manifest["indexes"]) == ["Flat"]
    calls.clear()
    again = build_index(tmp_path, [f"p{i}" for i in range(len(v))], _counting(v, calls), {"model": "m"},
                        factory="auto")
    assert calls == [] and again.manifest["factory"] == "Flat"
    assert auto_factory(AUTO_FLAT_MAX, 1024) == "Flat"
    assert auto_factory(21_015_324, 1024) == "IVF65536_HNSW32,PQ64"  # the paper's corpus, ImpRAG's 8 x 128 keys
    assert auto_factory(21_015_324, 768).endswith(",PQ64") and auto_factory(4_000_000, 200).endswith(",PQ8")


def test_a_loaded_ivf_index_probes_more_than_one_list(tmp_path):
    import faiss

    v = _vectors(700, 16)
    build_index(tmp_path, [f"p{i}" for i in range(len(v))], lambda s, e: v[s:e], {"model": "m"},
                factory="IVF64,Flat", n_train=700)
    assert faiss.extract_index_ivf(load_index(tmp_path, {"model": "m"}).index).nprobe == min(NPROBE, 64)
