"""A user's task and system, each in one file outside the package, run through the CLI with --include: the
two examples are taken verbatim from the docs (README "Adding a task", docs/extending.md "Adding a system"), so the
docs cannot drift from what works."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example(heading: str, doc: str = "README.md") -> str:
    """The first python block after the `heading` line (`### ...` in the README, `## ...` in docs/) of `doc`."""
    text = (ROOT / doc).read_text()
    section = re.split(rf"(?m)^#+ {re.escape(heading)}\n", text, maxsplit=1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def user_dir(tmp_path):
    """A folder outside the repository with the two plug-in files, the task's data and a corpus."""
    (tmp_path / "capitals_task.py").write_text(readme_example("Adding a task"))
    (tmp_path / "word_overlap.py").write_text(readme_example("Adding a system", "docs/extending.md"))
    data = tmp_path / "data"
    data.mkdir()
    rows = [("c0", "France", "Paris"), ("c1", "Peru", "Lima"), ("c2", "Japan", "Tokyo")]
    for split in ("train", "test"):
        (data / f"capitals.{split}.jsonl").write_text(
            "".join(json.dumps({"id": f"{split}-{i}", "country": c, "capital": a}) + "\n" for i, c, a in rows))
    corpus = [{"id": f"p{i}", "title": a, "text": f"{a} is the capital of {c}."} for i, c, a in rows]
    corpus.append({"id": "p9", "title": "France national football team", "text": "The team plays in Paris."})
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    return tmp_path


def test_readme_examples_are_short():
    for heading, doc in (("Adding a task", "README.md"), ("Adding a system", "docs/extending.md")):
        assert len(readme_example(heading, doc).strip().splitlines()) < 50, heading


def cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "imprag_bench.harness.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300)


def test_user_task_and_system_run_through_the_cli(user_dir):
    out = cli(["run", "--include", "capitals_task.py", "--include", "word_overlap.py", "--tasks", "capitals",
               "--systems", "word-overlap", "word-overlap:min_overlap=2,label=strict", "--corpus", "corpus.jsonl",
               "--fewshot", "0", "--k", "2", "--out", "run"], user_dir)
    assert out.returncode == 0, out.stderr
    board = pd.read_csv(user_dir / "run" / "leaderboard.csv").set_index(["system", "task"])
    assert set(board.index.get_level_values("system")) == {"word-overlap", "strict"}
    assert board.loc[("word-overlap", "capitals"), "em"] == 100.0  # "France capital" -> the passage titled Paris
    preds = [json.loads(x) for x in (user_dir / "run/preds/word-overlap/capitals.jsonl").read_text().splitlines()]
    assert [p["query"] for p in preds] == ["France capital", "Peru capital", "Japan capital"]
    assert [p["retrieved"][0] for p in preds] == ["pc0", "pc1", "pc2"]


def test_a_user_system_option_is_validated(user_dir):
    out = cli(["run", "--include", "capitals_task.py", "--include", "word_overlap.py", "--tasks", "capitals",
               "--systems", "word-overlap:min_overlap=x", "--corpus", "corpus.jsonl", "--out", "run"], user_dir)
    assert out.returncode == 2 and "min_overlap" in out.stderr and "Traceback" not in out.stderr
    assert not (user_dir / "run").exists()


def test_including_a_missing_or_broken_file_is_one_clear_error(user_dir):
    (user_dir / "broken.py").write_text("import no_such_module_anywhere\n")
    for spec, want in (("nope.py", "no such file"), ("broken.py", "importing it failed")):
        out = cli(["tasks", "--include", spec], user_dir)
        assert out.returncode == 2 and want in out.stderr and "Traceback" not in out.stderr
