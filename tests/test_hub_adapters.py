"""Hub loaders read small local files in the exact hub schemas (IMPRAG_BENCH_HUB_FIXTURES) and produce raw
records that TaskSpec.build accepts; bad rows and an unreachable hub are UserErrors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks import hub
from imprag_bench.tasks.spec import TaskSpec

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

QA = "Q: {question} A:"
SLOT = "{entity} [SEP] {relation} Provide the answer corresponding to the relation specified after [SEP] A:"
SPECS = {
    "qa": TaskSpec("qa", "seen", QA, {}, queries={"oracle": "{question}"}),
    "slot": TaskSpec("slot", "unseen-format", SLOT, {}, queries={"oracle": "{entity} {relation}"}),
    "fever": TaskSpec("fever", "unseen-format", "Is this statement true? {statement} A:", {},
                      queries={"oracle": "{statement}"}, answer_map={"SUPPORTS": "True", "REFUTES": "False"}),
    "aida": TaskSpec("aida", "unseen-format", "{context} Output the Wikipedia page title of the entity "
                     "mentioned between [START] and [END] in the given text A:", {}, queries={"oracle": "{mention}"}),
}


@pytest.fixture
def fixtures(monkeypatch):
    monkeypatch.setenv(hub.FIXTURES_ENV, str(FIX / "hub"))


@pytest.fixture
def bad_fixtures(monkeypatch):
    monkeypatch.setenv(hub.FIXTURES_ENV, str(FIX / "hub" / "_bad"))


def build_all(kind, records):
    return [SPECS[kind].build(r, where="test") for r in records]


def test_kilt_nq_answers_deduplicated_in_order(fixtures):
    recs = hub.kilt_nq("test", None)
    assert [r["id"] for r in recs] == ["6915606477668963399", "-4144726543598358282", "2429106547584219315"]
    assert recs[0] == {"id": "6915606477668963399", "question": "what do the 3 dots mean in math",
                       "answers": ["the therefore sign", "therefore sign"]}  # provenance-only entry dropped
    assert recs[1]["answers"] == ["Linda Davis"]  # duplicate answer entries collapse
    exs = build_all("qa", recs)
    assert exs[0].prompt == "Q: what do the 3 dots mean in math A:" and exs[0].target == "the therefore sign"
    train = hub.kilt_nq("train", None) + hub.kilt_nq("dev", None)  # both come from the hub train split
    assert sorted(r["id"] for r in train) == sorted(["-7885604869722283563", "-1029384756", "5566778899",
                                                     "-42424242"])


def test_kilt_hotpotqa(fixtures):
    recs = hub.kilt_hotpotqa("test", 2)
    assert len(recs) == 2 and recs[0]["answers"] == ["yes"]
    assert recs[1]["question"].startswith("What government position")
    assert build_all("qa", recs)[1].golds == ["Chief of Protocol"]


@pytest.mark.parametrize("loader,first", [
    (hub.kilt_trex, {"entity": "Cirith Ungol", "relation": "genre",
                     "answers": ["heavy metal", "heavy metal music", "metal"]}),
    (hub.kilt_zsre, {"entity": "Lahti Town Hall", "relation": "architect",
                     "answers": ["Eliel Saarinen", "Gottlieb Eliel Saarinen"]}),
])
def test_kilt_slot_filling_splits_subject_and_relation(fixtures, loader, first):
    recs = loader("test", None)
    assert len(recs) == 3
    assert {k: recs[0][k] for k in first} == first
    ex = build_all("slot", recs)[0]
    assert ex.prompt.startswith(f"{first['entity']} [SEP] {first['relation']} Provide")
    assert ex.queries["oracle"] == f"{first['entity']} {first['relation']}"


def test_kilt_fever_maps_to_true_false(fixtures):
    recs = hub.kilt_fever("test", None)
    assert [r["answers"] for r in recs] == [["SUPPORTS"], ["REFUTES"], ["REFUTES"]]
    assert recs[0]["statement"] == "Fox 2000 Pictures released the film Soul Food."
    assert [e.target for e in build_all("fever", recs)] == ["True", "False", "False"]


def test_kilt_aida_rewrites_entity_markers(fixtures):
    recs = hub.kilt_aida("test", None)
    assert [r["mention"] for r in recs] == ["LEICESTERSHIRE", "LONDON", "Phil Simmons"]
    assert recs[0]["answers"] == ["Leicestershire County Cricket Club"]
    ctx = recs[1]["context"]
    assert "[START] LONDON [END]" in ctx and "START_ENT" not in ctx and "END_ENT" not in ctx
    ex = build_all("aida", recs)[1]
    assert ex.queries["oracle"] == "LONDON" and ex.target == "London"


def test_nq_open_uses_validation_as_test_and_synthesizes_ids(fixtures):
    recs = hub.nq_open("test", None)
    assert recs[0] == {"id": "nq_open-validation-0", "question": "when was the last time anyone was on the moon",
                       "answers": ["14 December 1972 UTC", "December 1972"]}
    assert recs[2]["answers"] == ["one", "one season"]
    train = {r["id"]: r for r in hub.nq_open("train", None) + hub.nq_open("dev", None)}
    assert sorted(train) == [f"nq_open-train-{i}" for i in range(4)]
    assert train["nq_open-train-0"] == {"id": "nq_open-train-0", "question": "where did they film hot tub time machine",
                                        "answers": ["Fernie Alpine Resort"]}
    assert len(build_all("qa", recs)) == 3


def test_simpleqa_reads_the_hub_csv_and_parses_metadata(fixtures):
    recs = hub.simpleqa("test", None)
    assert recs[0] == {"id": "simpleqa-0", "question": "Who received the IEEE Frank Rosenblatt Award in 2010?",
                       "answers": ["Michio Sugeno"], "topic": "Science and technology", "answer_type": "Person"}
    assert recs[2]["answers"] == ["Radcliffe College"]
    assert build_all("qa", recs)[0].meta["topic"] == "Science and technology"
    with pytest.raises(UserError, match="no train split"):
        hub.simpleqa("train", None)


def test_twowiki_from_flashrag(fixtures):
    recs = hub.twowiki("test", None)
    assert recs[0] == {"id": "8813f87c0bdd11eba7f7acde48001122",
                       "question": "Who is the mother of the director of film Polish-Russian War (Film)?",
                       "answers": ["Małgorzata Braunek"], "type": "compositional"}
    # the one-row train fixture is too small to hold out a dev row: all of it is train
    assert [r["type"] for r in hub.twowiki("train", None)] == ["bridge_comparison"]
    assert hub.twowiki("dev", None) == []
    assert build_all("qa", recs)[1].target == "The Mask Of Fu Manchu"


def test_limit_is_respected(fixtures):
    assert len(hub.kilt_trex("test", 1)) == 1
    assert len(hub.load_wiki_corpus(2)) == 2


def test_wiki_corpus(fixtures):
    passages = hub.load_wiki_corpus()
    assert len(passages) == 4 and all(isinstance(p, Passage) for p in passages)
    assert passages[0].id == "1" and passages[0].title == "Aaron"
    assert passages[0].as_text().startswith("Aaron\nAaron Aaron (")


def test_parquet_fixture_is_read(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in
            (FIX / "hub/google-research-datasets__nq_open/nq_open/validation.jsonl").read_text().splitlines()]
    target = tmp_path / "google-research-datasets__nq_open" / "nq_open"
    target.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), target / "validation.parquet")
    monkeypatch.setenv(hub.FIXTURES_ENV, str(tmp_path))
    assert [r["answers"] for r in hub.nq_open("test", 2)] == [["14 December 1972 UTC", "December 1972"],
                                                             ["Bobby Scott", "Bob Russell"]]


def test_missing_fixture_file_names_the_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.FIXTURES_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"facebook__kilt_tasks.*hotpotqa.*validation\.jsonl"):
        hub.kilt_hotpotqa("test", None)


@pytest.mark.parametrize("loader,field", [
    (hub.kilt_nq, "'input'"),
    (hub.kilt_fever, "'output'"),
    (hub.nq_open, "'answer'"),
    (hub.kilt_trex, r"'input' must be 'subject \[SEP\] relation'"),
    (hub.twowiki, "'golden_answers' must be a non-empty list"),
])
def test_bad_rows_name_the_field(bad_fixtures, loader, field):
    with pytest.raises(UserError, match=field):
        loader("test", None)


def test_missing_field_message_names_dataset_and_row(bad_fixtures):
    with pytest.raises(UserError) as e:
        hub.kilt_nq("test", None)
    assert "facebook/kilt_tasks[nq]/validation row 1" in str(e.value)
    assert "missing field 'input'" in str(e.value)


def test_unknown_split():
    with pytest.raises(UserError, match="unknown split"):
        hub.kilt_nq("validation", None)


def test_connection_error_becomes_user_error(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'facebook/kilt_tasks' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv(hub.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UserError, match=f"cannot reach the Hugging Face hub.*HF_HUB_OFFLINE=1.*populated cache"
                                        f".*local:PATH.*{hub.FIXTURES_ENV}"):
        hub.kilt_fever("test", 5)


def test_real_offline_hub_gives_user_error(tmp_path):
    """End to end with the real datasets library in offline mode and an empty cache."""
    env = {k: v for k, v in os.environ.items() if k != hub.FIXTURES_ENV}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    code = ("from imprag_bench.harness.errors import UserError\nfrom imprag_bench.tasks import hub\n"
            "try:\n    hub.simpleqa('test', 3)\nexcept UserError as e:\n    print('USERERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert "USERERROR cannot reach the Hugging Face hub to load basicv8vc/SimpleQA" in out.stdout, out.stderr


def test_hub_loaders_cover_the_eight_tasks():
    assert sorted(hub.HUB_LOADERS) == sorted(["nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida"])


def test_kilt_answers_accepts_sequence_form():
    assert hub.kilt_answers({"answer": ["a", "", "a", "b"], "provenance": []}, "w") == ["a", "b"]
    with pytest.raises(UserError, match="no non-empty 'answer'"):
        hub.kilt_answers([{"answer": ""}], "w")


def test_aida_context_is_windowed_around_the_mention():
    from imprag_bench.tasks.hub import mention_window
    text = " ".join(f"w{i}" for i in range(300)) + " [START] British [END] " + " ".join(f"v{i}" for i in range(300))
    out = mention_window(text, words=3).split()
    assert out == ["w297", "w298", "w299", "[START]", "British", "[END]", "v0", "v1", "v2"]
