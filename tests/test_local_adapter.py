"""The FlashRAG-schema local adapter: evaluation files, corpora, and the errors users see for bad files."""
from __future__ import annotations

from pathlib import Path

import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks.local import load_corpus_file, local_records, local_task, read_jsonl

FIX = Path(__file__).parent / "fixtures" / "local"


def test_read_jsonl_skips_blank_lines():
    rows = read_jsonl(FIX / "qa.jsonl")
    assert [r["id"] for r in rows] == ["test_0", "test_1", "test_2"]


def test_read_jsonl_malformed_line_names_file_and_line():
    with pytest.raises(UserError) as e:
        read_jsonl(FIX / "malformed.jsonl")
    msg = str(e.value)
    assert f"{FIX / 'malformed.jsonl'}:3:" in msg  # line 2 is blank; the broken object is on line 3
    assert "malformed JSON" in msg and "expected one JSON object per line" in msg


def test_read_jsonl_non_object_line():
    with pytest.raises(UserError, match=r"not_object\.jsonl:1: expected a JSON object per line, got list"):
        read_jsonl(FIX / "not_object.jsonl")


def test_missing_file():
    with pytest.raises(UserError, match="no such file"):
        read_jsonl(FIX / "nope.jsonl")


def test_local_records_map_golden_answers():
    recs = local_records(FIX / "qa.jsonl")
    assert recs[0] == {"id": "test_0", "question": "who got the first nobel prize in physics",
                       "answers": ["Wilhelm Conrad Röntgen"], "metadata": {"source": "nq"}}
    assert recs[1] == {"id": "test_1", "question": "when is the next deadpool movie being released",
                       "answers": ["May 18, 2018"]}
    assert len(local_records(FIX / "qa.jsonl", limit=2)) == 2


@pytest.mark.parametrize("name,where,what", [
    ("missing_question.jsonl", ":2:", "missing field 'question'"),
    ("empty_answers.jsonl", ":1:", "field 'golden_answers' must be a non-empty list of strings, got []"),
    ("string_answers.jsonl", ":1:", "field 'golden_answers' must be a non-empty list of strings, got 'x'"),
    ("dup_ids.jsonl", ":2:", "duplicate id 'a' (first at"),
])
def test_local_records_errors_name_file_line_field(name, where, what):
    with pytest.raises(UserError) as e:
        local_records(FIX / name)
    assert f"{FIX / name}{where}" in str(e.value)
    assert what in str(e.value)


def test_local_records_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "eval.parquet"
    pd.DataFrame([{"id": "q1", "question": "capital of France?", "golden_answers": ["Paris", "paris"]},
                  {"id": "q2", "question": "capital of Peru?", "golden_answers": ["Lima"]}]).to_parquet(path)
    assert local_records(path) == [{"id": "q1", "question": "capital of France?", "answers": ["Paris", "paris"]},
                                   {"id": "q2", "question": "capital of Peru?", "answers": ["Lima"]}]


def test_local_records_parquet_bad_row_names_row(tmp_path):
    import pandas as pd

    path = tmp_path / "bad.parquet"
    pd.DataFrame([{"id": "q1", "question": "ok?", "golden_answers": ["a"]},
                  {"id": "q2", "question": "empty?", "golden_answers": []}]).to_parquet(path)
    with pytest.raises(UserError, match=r"bad\.parquet row 2: field 'golden_answers'"):
        local_records(path)


def test_not_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        local_records(path)


def test_local_task_serves_every_split_and_builds_examples():
    spec = local_task(FIX / "qa.jsonl")
    assert spec.name == "qa" and spec.group == "unseen-qa" and list(spec.loaders) == ["local"]
    for split in ("train", "dev", "test"):
        exs = spec.load("local", split)
        assert [e.id for e in exs] == ["test_0", "test_1", "test_2"]
    ex = spec.load("local", "test", limit=1)[0]
    assert ex.prompt == "Q: who got the first nobel prize in physics A:"
    assert ex.queries == {"prompt": ex.prompt, "oracle": "who got the first nobel prize in physics"}
    assert ex.golds == ["Wilhelm Conrad Röntgen"] and ex.meta["metadata"] == {"source": "nq"}


def test_local_task_custom_name_template_group():
    spec = local_task(FIX / "qa.jsonl", name="mine", template="Question: {question}\nAnswer:", group="seen")
    assert spec.name == "mine" and spec.group == "seen"
    assert spec.load("local", "test", 1)[0].prompt.startswith("Question: who got")


def test_local_task_missing_file():
    with pytest.raises(UserError, match="no such file"):
        local_task(FIX / "missing.jsonl")


def test_corpus_title_text():
    ps = load_corpus_file(FIX / "corpus.jsonl")
    assert ps[0] == Passage("p1", "Wilhelm Röntgen",
                            "Wilhelm Conrad Röntgen received the first Nobel Prize in Physics in 1901.")
    assert ps[2].title == "" and ps[2].as_text() == "Shortwave broadcasting uses amplitude modulation."


def test_corpus_flashrag_contents_strips_quoted_title():
    ps = load_corpus_file(FIX / "corpus_contents.jsonl")
    assert ps[0].id == "0" and ps[0].title == "Aaron"
    assert ps[0].text.startswith("Aaron Aaron ( or ; \"Ahärôn\")")
    assert ps[1].as_text() == "Aaron\nGod at Sinai granted Aaron the priesthood."


def test_corpus_errors(tmp_path):
    with pytest.raises(UserError, match=r"corpus_dup\.jsonl:2: duplicate passage id 'p1'"):
        load_corpus_file(FIX / "corpus_dup.jsonl")
    with pytest.raises(UserError, match=r"corpus_missing_text\.jsonl:2: missing field 'text'"):
        load_corpus_file(FIX / "corpus_missing_text.jsonl")
    bad = tmp_path / "corpus_bad.jsonl"
    bad.write_text('{"id": "p1", "title": "A", "text": "ok"}\n{"id": "p2", "title": "B", "text": "x"\n')
    with pytest.raises(UserError, match=r"corpus_bad\.jsonl:2: malformed JSON"):
        load_corpus_file(bad)


def test_corpus_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "corpus.parquet"
    pd.DataFrame([{"id": 7, "title": "T", "text": "body"}, {"id": 8, "title": None, "text": "more"}]).to_parquet(path)
    assert load_corpus_file(path) == [Passage("7", "T", "body"), Passage("8", "", "more")]
