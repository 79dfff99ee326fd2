"""The bad-input sweep (issue 12): every bad input a new user is likely to try gets exit code 2, exactly one
`imprag-bench: error:` line naming what is wrong, and no run folder; and no model is loaded on the way."""
from pathlib import Path

import pytest

import tests.toy  # noqa: F401  (registers the toy task, the toy corpus and the echo system)
from imprag_bench.harness.cli import main

FIX = Path(__file__).parent / "fixtures" / "local"
TOY = ["--tasks", "toy", "--systems", "echo", "--corpus", "toy", "--fewshot", "0"]


def _local(name):  # a FlashRAG-schema fixture as the task, read against the toy corpus
    return ["--tasks", f"local:{FIX / name}"]


# (id, arguments after `run` and the toy defaults (later flags win), text the message must contain)
CASES = [
    ("unknown task", ["--tasks", "nqq"], "unknown task 'nqq'; did you mean 'nq'"),
    ("unknown system", ["--systems", "denes"], "unknown system 'denes'; did you mean 'dense'"),
    ("option without value", ["--systems", "dense:k"], "must be key=value"),
    ("option with empty value", ["--systems", "dense:k="], "has no value"),
    ("option given twice", ["--systems", "dense:k=1,k=2"], "'k' is given twice"),
    ("unterminated quote", ["--systems", 'dense:index="IVF4,Flat'], "unterminated quote"),
    ("unknown option key", ["--systems", "bm25:quey=oracle"], "unknown option 'quey'; did you mean 'query'?"),
    ("bad option choice", ["--systems", "bm25:query=orcle"], "must be one of prompt, oracle; did you mean 'oracle'"),
    ("bad option type", ["--systems", "dense:k=abc"], "option k='abc' must be an integer"),
    ("nonexistent imprag checkpoint", ["--systems", "imprag:checkpoint=/no/such/dir"],
     "option checkpoint='/no/such/dir' is not a folder"),
    ("nonexistent ra-dit checkpoint", ["--systems", "ra-dit:checkpoint=/no/such/dir"], "is not a folder"),
    ("ra-dit without checkpoint", ["--systems", "ra-dit"], "needs checkpoint=<folder>"),
    ("bad dtype", ["--systems", "closed-book:dtype=float8"], "option dtype='float8' must be one of auto, float32"),
    ("bad device", ["--device", "gpu"], "option device='gpu' is not a torch device"),
    ("unknown model", ["--model", "nosuchmodel"], "model='nosuchmodel' is neither an offline alias"),
    ("same system twice", ["--systems", "echo", "echo"], "'echo' is given twice"),
    ("negative n", ["--n", "-3"], "argument --examples/-n/--n: must be at least 1, got -3"),
    ("zero n", ["--n", "0"], "argument --examples/-n/--n: must be at least 1, got 0"),
    ("non-integer n", ["--n", "three"], "argument --examples/-n/--n: expected an integer, got 'three'"),
    ("zero k", ["--k", "0"], "argument --k: must be at least 1"),
    ("negative fewshot", ["--fewshot", "-1"], "argument --fewshot: must be at least 0"),
    ("zero batch size", ["--batch-size", "0"], "argument --batch-size: must be at least 1"),
    ("zero max new tokens", ["--max-new-tokens", "0"], "argument --max-new-tokens: must be at least 1"),
    ("zero corpus limit", ["--corpus-limit", "0"], "argument --corpus-limit: must be at least 1"),
    ("unknown split", ["--split", "validation"], "argument --split: invalid choice: 'validation'"),
    ("unknown preset", ["--preset", "quik"], "unknown preset 'quik'"),
    ("task file missing", ["--tasks", "local:/no/such/qa.jsonl"], "/no/such/qa.jsonl: no such file"),
    ("non-UTF-8 task file", _local("not_utf8.jsonl"), "not_utf8.jsonl:2: not UTF-8 text (byte 0xe9"),
    ("malformed JSONL", _local("malformed.jsonl"), "malformed.jsonl:3: malformed JSON"),
    ("line not an object", _local("not_object.jsonl"), "not_object.jsonl:1: expected a JSON object"),
    ("missing field", _local("missing_question.jsonl"), "missing_question.jsonl:2: missing field 'question'"),
    ("empty gold", _local("empty_answers.jsonl"), "empty_answers.jsonl:1: field 'golden_answers' must be a non-empty"),
    ("gold not a list", _local("string_answers.jsonl"), "field 'golden_answers' must be a non-empty list"),
    ("duplicate ids", _local("dup_ids.jsonl"), "dup_ids.jsonl:2: duplicate id 'a'"),
    ("corpus file missing", ["--corpus", "/no/such/corpus.jsonl"], "corpus file /no/such/corpus.jsonl does not exist"),
    ("non-UTF-8 corpus file", ["--corpus", str(FIX / "corpus_not_utf8.jsonl")],
     "corpus_not_utf8.jsonl:2: not UTF-8 text (byte 0xef"),
    ("corpus row without text", ["--corpus", str(FIX / "corpus_missing_text.jsonl")], "missing field 'text'"),
    ("duplicate passage ids", ["--corpus", str(FIX / "corpus_dup.jsonl")], "duplicate passage id 'p1'"),
]


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Validation must refuse before any model is loaded: loading one fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was validated")
    import imprag_bench.baselines.reader as reader
    import imprag_bench.harness.lm as lm
    monkeypatch.setattr(lm, "load_lm", refuse)
    monkeypatch.setattr(reader, "load_lm", refuse)


@pytest.mark.parametrize("extra, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["run", *TOY, *extra, "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("imprag-bench: error: "), err
    assert message in errors[0], err
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_sweep_covers_the_issues_list():
    """The inputs issue 12 found unhandled are all in the sweep, and it has at least the 19 cases tried there."""
    ids = {c[0] for c in CASES}
    assert {"non-UTF-8 task file", "negative n", "zero k", "unknown option key", "nonexistent imprag checkpoint",
            "bad dtype"} <= ids
    assert len(CASES) >= 19 and len(ids) == len(CASES)


def test_good_input_still_runs(tmp_path):
    """The same defaults with nothing wrong run to a leaderboard (so the sweep fails for its own reason)."""
    out = tmp_path / "run"
    assert main(["run", *TOY, "--n", "2", "--k", "1", "--out", str(out)]) == 0
    assert (out / "leaderboard.csv").exists()
