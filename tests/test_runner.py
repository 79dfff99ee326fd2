"""The runner: per-example JSONL, resume after a real kill with identical results, clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.toy  # noqa: F401  (registers the toy task and the echo system)
from imprag_bench.harness.cli import main
from imprag_bench.harness.runner import read_done

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "--tasks", "toy", "--systems", "echo", "--corpus", "toy", "--fewshot", "0", "--k", "1"]


def _cli(out, env_extra=None):
    code = ("import sys, tests.toy; from imprag_bench.harness.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", code, *ARGS, "--out", str(out), "--batch-size", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _lines(out):
    return (out / "preds" / "echo" / "toy.jsonl").read_text().splitlines()


def test_run_writes_records_scores_and_leaderboard(tmp_path):
    assert main([*ARGS, "--out", str(tmp_path)]) == 0
    recs = [json.loads(x) for x in _lines(tmp_path)]
    assert len(recs) == 12 and {r["id"] for r in recs} == {f"toy-{i}" for i in range(12)}
    first = recs[0]
    assert first["prompt"] == "Q: What is the capital of France? A:" and first["query"] == first["prompt"]
    assert first["prediction"] == "Paris" and first["em"] == 1.0 and first["recall"] == 1.0
    assert (tmp_path / "leaderboard.csv").exists() and (tmp_path / "groups.png").exists()
    assert json.loads((tmp_path / "config.json").read_text())["tasks"] == ["toy"]


def test_killed_run_resumes_to_identical_results(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _cli(full).wait(60) == 0
    proc = _cli(killed, {"TOY_DELAY": "0.3"})
    path = killed / "preds" / "echo" / "toy.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    n_before = len(path.read_text().splitlines())
    assert 3 <= n_before < 12, "the run must be killed part-way"
    with open(path, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"system": "echo", "task": "toy", "id": "toy-')
    assert _cli(killed).wait(60) == 0
    assert _lines(killed) == _lines(full)
    assert (killed / "leaderboard.csv").read_text() == (full / "leaderboard.csv").read_text()


def test_read_done_cuts_partial_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": ')
    assert list(read_done(p)) == ["a", "b"]
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path), "--n", "4"]) == 0
    assert main([*ARGS, "--out", str(tmp_path), "--n", "5"]) == 2
    assert "different settings (n)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "--tasks", "nqq"], "unknown task 'nqq'; did you mean 'nq'"),
    (["run", "--tasks", "toy", "--systems", "denes"], "unknown system 'denes'; did you mean 'dense'"),
    (["run", "--tasks", "toy", "--systems", "dense:k"], "must be key=value"),
    (["run", "--preset", "quik"], "unknown preset 'quik'"),
    (["plot", "missing.csv"], "no such leaderboard CSV"),
])
def test_bad_input_exits_2_with_one_message(tmp_path, capsys, argv, message):
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1


def test_local_file_task_runs_with_its_own_corpus(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "a", "question": "What is the capital of Peru?", "golden_answers": ["Lima"]}\n'
                  '{"id": "b", "question": "What is the capital of Cuba?", "golden_answers": ["Havana"]}\n')
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "p0", "title": "Peru", "text": "The capital of Peru is Lima."}\n'
                      '{"id": "p1", "title": "Cuba", "text": "The capital of Cuba is Havana."}\n')
    out = tmp_path / "run"
    assert main(["run", "--tasks", f"local:{qa}", "--systems", "echo", "--corpus", str(corpus),
                 "--fewshot", "2", "--k", "1", "--out", str(out)]) == 0
    recs = [json.loads(x) for x in (out / "preds" / "echo" / "qa.jsonl").read_text().splitlines()]
    assert [(r["id"], r["prediction"], r["em"], r["recall"]) for r in recs] == [("a", "Lima", 1.0, 1.0),
                                                                               ("b", "Havana", 1.0, 1.0)]


def test_local_file_errors_name_file_and_line(tmp_path, capsys):
    qa = tmp_path / "bad.jsonl"
    qa.write_text('{"id": "a", "question": "q", "golden_answers": ["x"]}\n{"id": "b", "question": \n')
    assert main(["run", "--tasks", f"local:{qa}", "--systems", "echo", "--corpus", "toy",
                 "--out", str(tmp_path / "o")]) == 2
    assert f"{qa}:2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_local_file_is_evaluated_whole_unless_examples_is_given(tmp_path):
    qa = tmp_path / "qa16.jsonl"  # more lines than the quick preset's n (12)
    qa.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is the capital of C{i}?",
                                      "golden_answers": [f"K{i}"]}) + "\n" for i in range(16)))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "p0", "title": "C0", "text": "The capital of C0 is K0."}\n')
    common = ["run", "--tasks", f"local:{qa}", "--systems", "echo", "--corpus", str(corpus), "--k", "1"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert len((tmp_path / "whole/preds/echo/qa16.jsonl").read_text().splitlines()) == 16
    assert main([*common, "--examples", "5", "--out", str(tmp_path / "five")]) == 0
    assert len((tmp_path / "five/preds/echo/qa16.jsonl").read_text().splitlines()) == 5
