"""mini-KILT: schemas, leakage-free splits, entity-linking and FEVER invariants, byte-identical rebuilds.

The integration tests use the default asset cache (fetched once); the unit tests need no assets.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imprag_bench.harness.assets import sha256_file
from imprag_bench.tasks.minikilt import names, sources, splits

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {
    "nq": ("question",), "simpleqa": ("question",), "hotpotqa": ("question",), "2wiki": ("question",),
    "trex": ("entity", "relation"), "zsre": ("entity", "relation"), "fever": ("statement",),
    "aida": ("context", "mention"),
}
TEXT_KEY = {"fever": "statement", "aida": "context", "trex": "entity", "zsre": "entity"}


# ---------------------------------------------------------------- unit tests (no assets)

def test_assign_groups_is_seeded_disjoint_and_order_free():
    counts = {f"g{i}": 1 + i % 3 for i in range(400)}
    a = splits.assign_groups(counts, seed=7, test_n=100, dev_n=50)
    b = splits.assign_groups(dict(reversed(list(counts.items()))), seed=7, test_n=100, dev_n=50)
    assert a == b
    assert set(a) == set(counts)
    size = {s: sum(counts[g] for g, v in a.items() if v == s) for s in splits.SPLITS}
    assert 100 <= size["test"] < 103 and 50 <= size["dev"] < 53


def test_split_records_respects_eligibility_and_caps():
    recs = [{"id": f"r{i}", "g": f"g{i // 2}", "ok": i % 4 < 2} for i in range(600)]
    out = splits.split_records(recs, lambda r: r["g"], seed=1, train_n=20, test_n=50, dev_n=30,
                               eligible=lambda g: int(g[1:]) % 2 == 0)
    assert [len(out[s]) for s in ("train", "dev", "test")] == [20, 30, 50]
    assert all(r["ok"] for s in ("dev", "test") for r in out[s])
    groups = {s: {r["g"] for r in out[s]} for s in out}
    assert not (groups["train"] & groups["test"]) and not (groups["dev"] & groups["test"])


def test_normalize_sentences_and_names():
    assert sources.normalize("The  Beatles!") == "beatles"
    assert sources.sentences("Arthur C. Clarke wrote it. Žižka led the\nforces.") == \
        ["Arthur C. Clarke wrote it.", "Žižka led the forces."]
    assert names.currency_names("JPY", "Yen") == ["Japanese yen", "Yen", "JPY"]
    assert names.currency_names("EUR", "Euro") == ["Euro", "EUR"]
    assert names.language_names("fr") == ["French"] and names.language_names("xx") == []


# ---------------------------------------------------------------- integration tests (real assets)

@pytest.fixture(scope="module")
def mk():
    import imprag_bench.tasks.minikilt as mk
    mk.build_dir()
    return mk


@pytest.fixture(scope="module")
def data(mk):
    return {t: {s: mk.load_split(t, s) for s in splits.SPLITS} for t in mk.TASK_NAMES}


@pytest.mark.integration
def test_every_task_has_three_splits_with_schema(mk, data):
    assert mk.TASK_NAMES == ("nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida")
    for task, by_split in data.items():
        for split, recs in by_split.items():
            assert recs, (task, split)
            if split != "train":
                assert len(recs) == {"dev": 200, "test": 300}[split], (task, split)
            for r in recs:
                assert isinstance(r["id"], str) and r["id"]
                assert all(isinstance(r[k], str) and r[k].strip() for k in SCHEMA[task]), r
                assert isinstance(r["answers"], list) and r["answers"]
                assert all(isinstance(a, str) and a.strip() for a in r["answers"]), r
    assert len(data["nq"]["train"]) >= 1000 and len(data["hotpotqa"]["train"]) >= 1000


@pytest.mark.integration
def test_records_build_into_examples_with_the_paper_specs(data):
    from imprag_bench.harness.registry import TASKS
    for task, by_split in data.items():
        spec = TASKS.get(task)
        ex = [spec.build(r) for r in by_split["dev"]]
        assert all(e.prompt.endswith("A:") and e.golds for e in ex)


@pytest.mark.integration
def test_no_id_text_or_subject_leakage_across_splits(data):
    for task, by_split in data.items():
        ids = [r["id"] for s in splits.SPLITS for r in by_split[s]]
        assert len(ids) == len(set(ids)), task
        key = TEXT_KEY.get(task, "question")
        texts = {s: {sources.normalize(r[key]) for r in by_split[s]} for s in splits.SPLITS}
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            assert not texts[a] & texts[b], (task, a, b, sorted(texts[a] & texts[b])[:3])
        if task in ("hotpotqa", "2wiki", "fever"):
            subj = {s: {p for r in by_split[s] for p in r["subject"].split(" | ")} for s in splits.SPLITS}
            for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
                assert not subj[a] & subj[b], (task, a, b, sorted(subj[a] & subj[b])[:3])


@pytest.mark.integration
def test_aida_mentions_are_marked_differ_from_title_and_link_to_corpus_titles(mk, data):
    titles = {p.title for p in mk.load_corpus()}
    for recs in data["aida"].values():
        for r in recs:
            assert f"[START] {r['mention']} [END]" in r["context"]
            assert r["context"].count("[START]") == 1 and r["context"].count("[END]") == 1
            assert r["mention"] != r["answers"][0]
            assert r["answers"][0] in titles


@pytest.mark.integration
def test_fever_labels_are_balanced(data):
    for split, recs in data["fever"].items():
        labels = [r["answers"] for r in recs]
        assert all(lab in (["SUPPORTS"], ["REFUTES"]) for lab in labels)
        assert labels.count(["SUPPORTS"]) == labels.count(["REFUTES"]), split


@pytest.mark.integration
def test_corpus_ids_unique_and_composition(mk):
    corpus = mk.load_corpus()
    assert len({p.id for p in corpus}) == len(corpus) < 15_000
    assert sum(p.id.startswith("wiki:") for p in corpus) == 10_033
    assert all(p.text.strip() and p.title.strip() for p in corpus)


def _file_digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".verified.json"}


@pytest.mark.integration
def test_two_builds_are_byte_identical(mk, tmp_path):
    """Rebuild twice in fresh processes with different hash seeds; both equal the cached build."""
    code = "import sys; from pathlib import Path; from imprag_bench.tasks.minikilt.build import build; build(Path(sys.argv[1]))"
    for i, seed in enumerate(("1", "2")):
        out = tmp_path / f"b{i}"
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    first, second = _file_digests(tmp_path / "b0"), _file_digests(tmp_path / "b1")
    assert first == second
    assert first == _file_digests(mk.build_dir())
    stats = json.loads((tmp_path / "b0" / "stats.json").read_text())
    assert stats["corpus"]["passages"] < 15_000
