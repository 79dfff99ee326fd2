"""How hub data is read: only the requested split's files, from the hub cache when offline, the corpus streamed
into Passages, SimpleQA answers kept verbatim, and a dev split disjoint from train and test. All offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.tasks import hub, hubio

FIX = Path(__file__).parent / "fixtures" / "hub"
ROOT = Path(__file__).parent.parent


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def fixtures(monkeypatch):
    monkeypatch.setenv(hub.FIXTURES_ENV, str(FIX))


def test_kilt_dev_read_fetches_only_the_validation_files(tmp_path, monkeypatch):
    """The hub path: snapshot_download is asked for trex/validation-* only, and the rows come from there."""
    import huggingface_hub

    _write_parquet(_jsonl(FIX / "facebook__kilt_tasks/trex/validation.jsonl"),
                   tmp_path / "trex/validation-00000-of-00001.parquet")
    calls = []

    def snapshot(repo_id, repo_type, allow_patterns):
        calls.append((repo_id, repo_type, allow_patterns))
        return str(tmp_path)

    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    recs = hub.kilt_trex("test", None)
    assert calls == [("facebook/kilt_tasks", "dataset", ["trex/validation-*.parquet"])]
    assert [r["entity"] for r in recs][:1] == ["Cirith Ungol"] and len(recs) == 3


def test_dev_and_train_read_only_the_train_files(tmp_path, monkeypatch):
    import huggingface_hub

    _write_parquet(_jsonl(FIX / "google-research-datasets__nq_open/nq_open/train.jsonl"),
                   tmp_path / "nq_open/train-00000-of-00001.parquet")
    patterns = []
    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, repo_type, allow_patterns: patterns.append(allow_patterns) or str(tmp_path))
    assert len(hub.nq_open("dev", None)) == 2 and len(hub.nq_open("train", None)) == 2
    assert patterns == [["nq_open/train-*.parquet"]] * 2


def test_missing_file_in_snapshot_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: str(tmp_path))
    with pytest.raises(UserError, match=r"no file matching 'hotpotqa/validation-\*\.parquet'"):
        hub.kilt_hotpotqa("test", None)


def test_offline_mode_reads_a_populated_hub_cache(tmp_path):
    """HF_HUB_OFFLINE=1 with the split's files in the hub cache works (the advice the error message gives);
    a split that is not cached gives the clean message."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "datasets--facebook--kilt_tasks"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / "4f1e0c2a9b7d"  # the hub cache layout: snapshot files are symlinks to blobs
    _write_parquet(_jsonl(FIX / "facebook__kilt_tasks/nq/validation.jsonl"), blob)
    link = repo / "snapshots" / commit / "nq" / "validation-00000-of-00001.parquet"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    env = {k: v for k, v in os.environ.items() if k != hub.FIXTURES_ENV}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    code = ("from imprag_bench.harness.errors import UserError\nfrom imprag_bench.tasks import hub\n"
            "print('IDS', [r['id'] for r in hub.kilt_nq('test', None)])\n"
            "try:\n    hub.kilt_hotpotqa('test', None)\nexcept UserError as e:\n    print('USERERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert "IDS ['6915606477668963399', '-4144726543598358282', '2429106547584219315']" in out.stdout, out.stderr
    assert "USERERROR" in out.stdout, out.stderr  # hotpotqa files are not in the cache


def test_simpleqa_answers_that_look_like_missing_values_stay_strings(fixtures):
    recs = hub.simpleqa("test", None)
    assert [r["answers"] for r in recs[3:]] == [["None"], ["NA"]]
    assert all(isinstance(a, str) for r in recs for a in r["answers"])


def test_simpleqa_has_no_dev_or_train_split(fixtures):
    for split in ("dev", "train"):
        with pytest.raises(UserError, match="only its test split"):
            hub.simpleqa(split, None)


def test_dev_is_a_seeded_held_out_slice_of_train():
    n = 87_925  # NQ-open train
    dev, train = hubio.split_indices(n, "dev"), hubio.split_indices(n, "train")
    assert len(dev) == hubio.DEV_SIZE == 1000
    assert not set(dev) & set(train) and sorted(dev + train) == list(range(n))
    assert hubio.split_indices(n, "dev") == dev  # seeded: the same every time
    assert hubio.dev_indices(n, seed=hubio.DEV_SEED + 1) != dev
    assert len(hubio.dev_indices(5)) == 2 and hubio.dev_indices(1) == []  # tiny splits keep half for train


@pytest.mark.parametrize("loader", [hub.kilt_nq, hub.nq_open])
def test_hub_dev_is_disjoint_from_train_and_test(fixtures, loader):
    dev, train, test = (loader(s, None) for s in ("dev", "train", "test"))
    assert dev and train and test
    ids = [{r["id"] for r in part} for part in (dev, train, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert loader("dev", None) == dev  # deterministic


def test_kilt_dev_never_reads_the_validation_split(fixtures, monkeypatch):
    seen = []
    real = hubio.read_split
    monkeypatch.setattr(hubio, "read_split", lambda d, c, s, p, **kw: seen.append(s) or real(d, c, s, p, **kw))
    hub.kilt_nq("dev", None)
    assert seen == ["train"]


def test_corpus_is_streamed_into_passages_one_by_one(monkeypatch):
    """Each Passage is built as its row arrives (no list of rows), from a streamed, column-restricted read."""
    import datasets

    pulled, calls = [], []

    def rows():
        for i in range(5):
            pulled.append(i)
            yield {"id": str(i + 1), "title": f"T{i}", "text": f"text {i}"}

    def fake_load(path, **kw):
        calls.append((path, kw))
        return rows()

    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    it = hub.iter_wiki_passages()
    first = next(it)
    assert first.id == "1" and first.title == "T0" and pulled == [0]
    # the generic Parquet builder over hf:// paths (wiki_dpr still ships a loading script datasets>=4 refuses)
    assert calls == [("parquet", {"data_files": {"train": f"hf://datasets/facebook/wiki_dpr/{hub.WIKI_DPR_FILES}"},
                                  "split": "train", "streaming": True, "columns": ["id", "title", "text"]})]
    assert [p.id for p in hub.iter_wiki_passages(limit=3)] == ["1", "2", "3"]


def test_corpus_progress_bar_knows_the_total(fixtures, monkeypatch, tmp_path):
    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(tmp_path))  # an empty cache: no corpus store to reuse yet
    totals = []
    real = hub.tqdm

    def spy(iterable, **kw):
        totals.append(kw["total"])
        return real(iterable, **kw)

    monkeypatch.setattr(hub, "tqdm", spy)
    assert len(hub.load_wiki_corpus()) == 4 and len(hub.load_wiki_corpus(2)) == 2
    assert totals == [21_015_324, 2]


def test_streamed_corpus_offline_advice_points_to_a_local_corpus(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(tmp_path))  # no corpus store to open instead of the hub

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'facebook/wiki_dpr' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as e:
        hub.load_wiki_corpus(3)
    msg = str(e.value)
    assert "never cached" in msg and "HF_HUB_OFFLINE=1 cannot help" in msg and "--corpus PATH" in msg
