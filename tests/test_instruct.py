"""The paper's instruction-tuning sets: each loader on 2-3 fixture rows in the dataset's real hub schema
(tests/fixtures/hub/<owner>__<name>/<config>/train.jsonl; NewsQA: Maluuba's combined JSON), checked against
hand-written records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.tasks import instruct
from imprag_bench.tasks.hubio import FIXTURES_ENV
from imprag_bench.tasks.instruct import INSTRUCT_SETS, load_instruct

FIX = Path(__file__).parent / "fixtures" / "hub"
NEWSQA = FIX / "_manual" / "newsqa" / "combined-newsqa-data-v1.json"


@pytest.fixture(autouse=True)
def fixtures(monkeypatch):
    monkeypatch.setenv(FIXTURES_ENV, str(FIX))
    monkeypatch.delenv(instruct.NEWSQA_ENV, raising=False)


def by_id(records: list[dict]) -> dict[str, dict]:
    assert all(set(r) == {"id", "prompt", "target", "source"} for r in records)
    return {r["id"]: r for r in records}


def test_the_eight_sets():
    assert INSTRUCT_SETS == ("oasst1", "coqa", "drop", "newsqa", "pubmedqa", "quail", "squad_v2", "cnn_dailymail")


def test_oasst1_first_turn_english_pairs_with_the_best_ranked_reply():
    recs = by_id(load_instruct("oasst1"))
    root_a, root_c = "oasst1:6ab24d72-0181-4594-a9cd-deaf170242fb", "oasst1:f1f3c6c0-2a0f-4f6e-9d1e-6a5d0c2b9e11"
    assert sorted(recs) == [root_a, root_c]
    first = recs[root_a]
    assert first["prompt"] == ('Can you write a short introduction about the relevance of the term "monopsony" '
                               'in economics?')
    assert first["target"].startswith('"Monopsony" refers to a market structure')  # rank 0, not rank 1
    assert recs[root_c]["target"].startswith("A haiku is")  # unranked reply
    assert all(r["source"] == "oasst1" for r in recs.values())  # Spanish tree and the 2nd turn left out


def test_coqa_keeps_the_conversation_so_far_and_skips_unknown_answers():
    recs = by_id(load_instruct("coqa", seed=0))
    assert len(recs) == 2
    story0 = next(r for k, r in recs.items() if k.startswith("coqa:0:"))
    assert story0["id"] in ("coqa:0:0", "coqa:0:1")  # turn 2's answer is "unknown"
    if story0["id"] == "coqa:0:1":
        assert story0["prompt"].endswith("oldest libraries in the world. Q: When was the Vat formally opened? "
                                         "A: It was formally established in 1475 Q: what is the library for? A:")
        assert story0["target"] == "the Holy See"
    jenna = next(r for k, r in recs.items() if k.startswith("coqa:1:"))
    expected = {"coqa:1:0": ("Q: Where was Jenna born? A:", "Ohio"),
                "coqa:1:1": ("Q: Where was Jenna born? A: Ohio Q: Where did she move? A:", "Texas")}[jenna["id"]]
    assert jenna["prompt"] == "(CNN) -- Jenna was born in Ohio. She moved to Texas when she was ten. " + expected[0]
    assert jenna["target"] == expected[1]


def test_drop_joins_spans():
    recs = by_id(load_instruct("drop"))
    assert recs["drop:a1b2c3d4-0000-4a8b-a6ac-4d275ea68066"] == {
        "id": "drop:a1b2c3d4-0000-4a8b-a6ac-4d275ea68066",
        "prompt": "The treaty was signed by France and Spain in 1659, and Portugal joined later. "
                  "Q: Which countries signed the treaty in 1659? A:",
        "target": "France, Spain", "source": "drop"}
    assert recs["drop:f16c0ee7-f131-4a8b-a6ac-4d275ea68066"]["target"] == "28"


def test_pubmedqa_context_is_the_abstract_and_the_answer_the_decision():
    recs = by_id(load_instruct("pubmedqa"))
    r = recs["pubmedqa:25429730"]
    assert r["prompt"] == ("Chronic rhinosinusitis (CRS) is a heterogeneous disease with an uncertain pathogenesis. "
                           "ILC2 frequencies were associated with the presence of nasal polyps. Q: Are group 2 innate "
                           "lymphoid cells ( ILC2s ) increased in chronic rhinosinusitis with nasal polyps or "
                           "eosinophilia? A:")
    assert r["target"] == "yes" and recs["pubmedqa:25433161"]["target"] == "no"


def test_quail_target_is_the_correct_option_text():
    recs = by_id(load_instruct("quail"))
    assert recs["quail:f001_0"]["target"] == "an hour" and recs["quail:f001_1"]["target"] == "snow"
    assert recs["quail:f001_1"]["prompt"].endswith("covered in snow. Q: What covered the train? A:")


def test_squad_v2_answerable_only():
    recs = by_id(load_instruct("squad_v2"))
    assert sorted(recs) == ["squad_v2:56be85543aeaaa14008c9063", "squad_v2:56be85543aeaaa14008c9065"]
    assert recs["squad_v2:56be85543aeaaa14008c9065"]["target"] == "Houston, Texas"


def test_cnn_dailymail_summary_template():
    recs = by_id(load_instruct("cnn_dailymail"))
    r = recs["cnn_dailymail:ee8871b15c50d0db17b0179a6d2beab35065f1e9"]
    assert r["prompt"] == ("Editor's note: In our Behind the Scenes series, CNN correspondents share their experiences "
                           "in covering news. Summarize this article:")
    assert r["target"] == 'Mentally ill inmates in Miami are housed on the "forgotten floor" .'


def test_newsqa_from_the_manual_download(monkeypatch):
    recs = by_id(load_instruct("newsqa", path=str(NEWSQA)))
    story = "./cnn/stories/42d01e187213e86f5fe617fe32e716ff7fa3afc4.story"
    assert sorted(recs) == [f"newsqa:{story}:0", f"newsqa:{story}:2"]  # bad question and dev story left out
    assert recs[f"newsqa:{story}:0"]["target"] == "the death sentence"
    assert recs[f"newsqa:{story}:2"]["target"] == "A high court in northern India"
    assert recs[f"newsqa:{story}:2"]["prompt"].endswith("the death sentence. Q: Which court? A:")
    monkeypatch.setenv(instruct.NEWSQA_ENV, str(NEWSQA))
    assert by_id(load_instruct("newsqa")) == recs


def test_newsqa_without_a_file_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="manual download.*Maluuba/newsqa.*IMPRAG_BENCH_NEWSQA"):
        load_instruct("newsqa")
    with pytest.raises(UserError, match="does not exist"):
        load_instruct("newsqa", path=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stories": []}))
    with pytest.raises(UserError, match="not Maluuba's combined-newsqa-data-v1.json"):
        load_instruct("newsqa", path=str(bad))


@pytest.mark.parametrize("name", [n for n in INSTRUCT_SETS if n != "newsqa"])
def test_seeded_and_limited(name):
    full = load_instruct(name, seed=7)
    assert load_instruct(name, seed=7) == full  # same seed, same records in the same order
    assert load_instruct(name, limit=1, seed=7) == full[:1]
    unit = (lambda rid: rid.rsplit(":", 1)[0]) if name == "coqa" else (lambda rid: rid)  # CoQA: seeded turn
    assert sorted(unit(r["id"]) for r in load_instruct(name, seed=8)) == sorted(unit(r["id"]) for r in full)


def test_seed_changes_the_draw(tmp_path, monkeypatch):
    rows = [{"id": f"q{i}", "title": "T", "context": f"Context {i}.", "question": f"Question {i}?",
             "answers": {"text": [f"a{i}"], "answer_start": [0]}} for i in range(50)]
    target = tmp_path / "rajpurkar__squad_v2" / "default"
    target.mkdir(parents=True)
    (target / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path))
    a, b = load_instruct("squad_v2", limit=10, seed=0), load_instruct("squad_v2", limit=10, seed=1)
    assert len(a) == len(b) == 10 and [r["id"] for r in a] != [r["id"] for r in b]


def test_bad_row_names_the_row(tmp_path, monkeypatch):
    target = tmp_path / "ucinlp__drop" / "default"
    target.mkdir(parents=True)
    (target / "train.jsonl").write_text(json.dumps({"passage": "p", "question": "q"}) + "\n")
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"ucinlp/drop\[default\]/train row 0: unexpected drop row"):
        load_instruct("drop")


def test_unknown_set():
    with pytest.raises(UserError, match="unknown instruction set 'alpaca'"):
        load_instruct("alpaca")


def test_unreachable_hub_gives_the_cache_advice(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'ucinlp/drop' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="cannot reach the Hugging Face hub to load ucinlp/drop.*HF_HUB_OFFLINE=1") as e:
        load_instruct("drop")
    assert "local:PATH" not in str(e.value)  # that advice is for evaluation tasks


def test_oasst1_keeps_the_whole_best_ranked_conversation():
    from imprag_bench.tasks.instruct import _oasst_pairs

    rows = [("a", None, "Hi?", "prompter", "en", None), ("b", "a", "Worse.", "assistant", "en", 1),
            ("c", "a", "Hello.", "assistant", "en", 0), ("d", "c", "And?", "prompter", "en", None),
            ("e", "d", "More.", "assistant", "en", 0), ("f", "e", "Thanks", "prompter", "en", None),
            ("g", None, "Alone", "prompter", "en", None), ("h", None, "Hola", "prompter", "es", None),
            ("i", "h", "Hola.", "assistant", "es", 0)]
    cols = ("message_id", "parent_id", "text", "role", "lang", "rank")
    ds = {c: [r[j] for r in rows] for j, c in enumerate(cols)}
    assert _oasst_pairs(ds) == [{"id": "a", "prompt": "Hi? Hello. And?", "reply": "More."}]
