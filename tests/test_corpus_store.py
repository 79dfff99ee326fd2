"""The memory-mapped corpus store (imprag_bench/harness/corpus_store.py) behind load_corpus("hub"): it reads as
the list Corpus does, is written once and reused, is rebuilt when incomplete, and refuses duplicate ids."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from imprag_bench.harness import corpus_store
from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks import hub
from imprag_bench.tasks.corpora import load_corpus
from tests.hub_large import make_hub_large

FIX = Path(__file__).resolve().parent / "fixtures" / "hub"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(hub.FIXTURES_ENV, str(FIX))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """The 244-passage hub fixture, made before `cache` points the cache elsewhere (mini-KILT is built once)."""
    return make_hub_large(tmp_path_factory.mktemp("large") / "hub")


def as_list(passages) -> Corpus:
    return Corpus("hub-wiki", list(passages))


def old_digest(passages) -> str:
    """Corpus.digest() as it was written before stores existed (indexes are bound to these values)."""
    h = hashlib.sha256()
    for p in passages:
        for part in (p.id, p.title, p.text):
            h.update(part.encode())
            h.update(b"\x00")
    return h.hexdigest()


def assert_same(stored: Corpus, listed: Corpus) -> None:
    assert len(stored) == len(listed)
    assert list(stored.ids) == listed.ids and list(stored.texts) == listed.texts
    assert list(stored.passages) == listed.passages
    ids = listed.ids[::-1]
    assert stored.get_many(ids) == listed.get_many(ids)
    assert all(stored[pid] == listed[pid] for pid in ids)
    assert all(pid in stored._by_id for pid in ids) and "nope" not in stored._by_id  # report_html asks so
    assert stored.digest() == listed.digest() == old_digest(listed.passages)


def test_store_reads_as_the_list_corpus_on_the_hub_fixture(cache):
    stored = load_corpus("hub")
    assert isinstance(stored.passages, corpus_store.StoredPassages)
    assert_same(stored, as_list(hub.iter_wiki_passages()))
    assert stored.passages.folder.parent == cache / "corpus"
    assert len(load_corpus("hub", 2)) == 2 and load_corpus("hub", 2).digest() == as_list(
        hub.iter_wiki_passages(2)).digest()


def test_store_across_record_batches_on_the_large_fixture(large, cache, monkeypatch):
    monkeypatch.setenv(hub.FIXTURES_ENV, str(large))
    monkeypatch.setattr(corpus_store, "BATCH", 7)  # 244 rows in 35 record batches: slices cross them
    stored, listed = load_corpus("hub"), as_list(hub.iter_wiki_passages())
    assert len(listed) == 244
    assert_same(stored, listed)
    texts, want = stored.texts, listed.texts
    for s, e in ((0, 64), (5, 9), (60, 130), (200, 244), (240, 300), (13, 13)):
        assert texts[s:e] == want[s:e]
    assert texts[-1] == want[-1] and texts[3] == want[3] and texts[-3:] == want[-3:]
    assert texts[10:40:3] == want[10:40:3] and stored.ids[100:103] == listed.ids[100:103]
    assert stored.passages[6:8] == listed.passages[6:8]
    with pytest.raises(IndexError):
        texts[244]
    with pytest.raises(KeyError):
        stored["245"]


def test_second_load_reads_the_store_not_the_hub(cache, monkeypatch):
    first = load_corpus("hub")

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was read although the store exists")

    monkeypatch.setattr(hub, "iter_wiki_passages", no_hub)
    monkeypatch.setattr(hub.hubio, "stream_split", no_hub)
    again = load_corpus("hub")
    assert again.passages.folder == first.passages.folder and list(again.texts) == list(first.texts)
    assert again.digest() == first.digest()


def test_incomplete_store_is_rebuilt(cache, monkeypatch):
    folder = load_corpus("hub").passages.folder
    reads = []
    real = hub.iter_wiki_passages

    def counting(limit=None):
        reads.append(limit)
        return real(limit)

    monkeypatch.setattr(hub, "iter_wiki_passages", counting)
    (folder / corpus_store.META).unlink()  # a write killed before its metadata
    assert corpus_store.read_meta(folder) is None
    assert_same(load_corpus("hub"), as_list(real()))
    assert reads == [None] and corpus_store.read_meta(folder) is not None
    with open(folder / corpus_store.DATA, "r+b") as f:  # a truncated data file: sizes differ from meta.json
        f.truncate(100)
    assert_same(load_corpus("hub"), as_list(real()))
    assert reads == [None, None]
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name, folder.name + ".lock"]  # no temp left


@pytest.mark.parametrize("ids", [["1", "2", "3", "2", "3"], ["a", "b", "b", "c", "a"], ["5", "x", "5"]])
def test_duplicate_ids_are_refused_as_the_list_corpus_refuses_them(tmp_path, ids):
    passages = [Passage(pid, f"T{i}", f"text {i}") for i, pid in enumerate(ids)]
    with pytest.raises(UserError) as listed:
        Corpus("hub-wiki", passages)
    with pytest.raises(UserError) as stored:
        corpus_store.open_store(tmp_path / "s", lambda: iter(passages), "hub-wiki")
    assert str(stored.value) == str(listed.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.lock"]  # nothing half-written stays


@pytest.mark.parametrize("ids,kind", [(["10", "3", "7", "100"], "sorted_int"), (["b", "a", "007", "é", ""],
                                                                                 "sorted_bytes"),
                                      (["5", "6", "7"], "range")])
def test_id_maps(tmp_path, monkeypatch, ids, kind):
    monkeypatch.setattr(corpus_store, "BATCH", 2)
    passages = [Passage(pid, "" if i % 2 else f"T{i}", f"text {i}") for i, pid in enumerate(ids)]
    store = corpus_store.open_store(tmp_path / "s", lambda: iter(passages), "c", {"what": "test"})
    assert store.meta["id_map"]["kind"] == kind and store.meta["source"] == {"what": "test"}
    assert_same(Corpus("c", store), Corpus("c", passages))
    for bad in ("4", "07", "8", "a\x00", " 5", 5):
        assert bad not in store.rows_by_id


def test_other_local_ranks_wait_for_local_rank_0(tmp_path, monkeypatch):
    passages = [Passage(str(i), "T", f"text {i}") for i in range(1, 6)]
    monkeypatch.setattr(corpus_store, "POLL_S", 0.05)
    monkeypatch.setenv("LOCAL_RANK", "1")
    got = []

    def rank1():
        got.append(corpus_store.open_store(tmp_path / "s", lambda: pytest.fail("rank 1 wrote"), "c"))

    t = threading.Thread(target=rank1)
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and not got
    corpus_store.write_store(tmp_path / "s", passages, "c")  # what local rank 0 does
    t.join(10)
    assert list(got[0]) == passages


def test_store_is_an_arrow_file_datasets_opens_and_pickles_by_path(cache):
    import pickle

    import datasets

    store = load_corpus("hub").passages
    ds = datasets.Dataset.from_file(str(store.folder / corpus_store.DATA))
    assert ds["id"] == list(store.ids) and ds.column_names == ["id", "title", "text"]
    again = pickle.loads(pickle.dumps(store))
    assert again.folder == store.folder and list(again) == list(store) and len(pickle.dumps(store)) < 500
