"""`reproduce --preset paper` end to end under `torchrun --nproc_per_node 2` (gloo, CPU) on local files in the
hub's schemas: a tiny random Llama, the 244-passage hub fixture, 2 examples per task. Only these overrides differ
from the GPU command (MiniLM stands in for Contriever, which is not offline). Every output file is written, the
paired table has ImpRAG against each baseline, and a run killed part-way resumes to the same files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.proc_tree import kill_tree

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ["leaderboard.csv", "paired.csv", "headline.png", "costs.csv", "manifest.json", "report.html"]
BASELINES = {"closed-book", "bm25", "dense", "ra-it", "ra-dit", "ra-dit-llama"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.hub_large import make_hub_large
    from tests.test_paper_dry_run import tiny_model

    d = tmp_path_factory.mktemp("paper")
    return d, tiny_model(d / "tiny"), make_hub_large(d / "hub")


def command(d: Path, model: str, out: Path) -> list[str]:
    cache = d / "cache"
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
            "imprag_bench.harness.cli", "reproduce", "--preset", "paper", "--out", str(out),
            "--train-set", f"model={model}", "device=cpu", "bf16=false", "steps=2", "batch_size=4", "ckpt_every=1",
            "retriever=minilm", "l_max=32", "n_read=2", "max_prompt_tokens=64", "max_target_tokens=8",
            "retriever_steps=2", f"cache_dir={cache}",
            "--run-set", f"model={model}", "device=cpu", "n=2", "k=2", "max_new_tokens=3", f"cache_dir={cache}",
            "dtype=float32", "--eval-set", "encoder=minilm", "passage_tokens=32"]


def env(hub: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "IMPRAG_BENCH_HUB_FIXTURES": str(hub),
            "IMPRAG_BENCH_NEWSQA": str(hub / "_manual/newsqa/combined-newsqa-data-v1.json")}


def results(out: Path) -> dict[str, bytes]:
    """The files that must not depend on an interruption (costs.csv and the manifest hold timings)."""
    files = sorted(out.glob("preds/*/*.jsonl")) + [out / "leaderboard.csv", out / "paired.csv"]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.mark.integration
def test_reproduce_paper_under_torchrun_writes_everything_and_resumes_to_the_same_files(setup):
    d, model, hub = setup
    full = d / "full"
    done = subprocess.run(command(d, model, full), cwd=ROOT, env=env(hub), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert all((full / f).exists() for f in OUTPUTS)
    paired = pd.read_csv(full / "paired.csv")
    assert set(paired["reference"]) == {"imprag"} and set(paired["baseline"]) == BASELINES
    assert set(pd.read_csv(full / "costs.csv")["system"]) == BASELINES | {"imprag"}
    manifest = json.loads((full / "manifest.json").read_text())
    assert {f"train:{s}" for s in ("ra-it", "ra-dit", "ra-dit-llama", "imprag")} | {"eval", "stats"} \
        <= set(manifest["wall_s"])

    cut = d / "cut"  # killed (every process) once the evaluation has written its first part file
    proc = subprocess.Popen(command(d, model, cut), cwd=ROOT, env=env(hub), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not list(cut.glob("preds/*/*.jsonl")) and proc.poll() is None and time.time() - t0 < 900:
        time.sleep(0.2)
    kill_tree(proc.pid)  # torchrun and its workers
    proc.wait()
    assert not (cut / "report.html").exists()
    again = subprocess.run(command(d, model, cut), cwd=ROOT, env=env(hub), capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert results(cut) == results(full)


def test_both_paper_presets_are_listed_and_resolve(tmp_path, capsys):
    from imprag_bench.harness.cli import main
    from imprag_bench.harness.reproduce import ReproducePreset, train_configs

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    assert "paper | paper-8b" in capsys.readouterr().out
    for name, model in (("paper", "meta-llama/Llama-3.2-3B"), ("paper-8b", "meta-llama/Llama-3.1-8B")):
        preset = ReproducePreset.load(name)
        cfgs = train_configs(preset, tmp_path, [])
        assert {s["train"] for s, _ in cfgs} == {"ra-it", "ra-dit", "ra-dit-llama", "imprag"}
        assert {c["model"] for _, c in cfgs} == {model} and all(c.recipe == "paper" for _, c in cfgs)
        assert preset.eval_options["index"] == "auto" and preset.budget == "paper"
