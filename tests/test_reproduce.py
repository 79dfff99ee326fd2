"""The headline command (`imprag-bench reproduce`) on a tiny scale: killed during training and again during
evaluation, the same command continues and ends with the files of an uninterrupted run; and its outputs
(paired statistics, figure, manifest, costs, report) are there."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.tiny import byte_tokenizer, tiny_llama

ROOT = Path(__file__).resolve().parents[1]


def command(out: Path, model: Path, costs: bool = False) -> list[str]:
    small = [f"model={model}", "corpus_limit=200"]
    return [sys.executable, "-m", "imprag_bench.harness.cli", "reproduce", "--preset", "smoke", "--out", str(out),
            "--systems", "closed-book", "bm25", "ra-dit-llama", "imprag",
            "--train-set", *small, "steps=6", "ckpt_every=1", "batch_size=4", "retriever_steps=2", "bf16=false",
            "train_fewshot=0", "max_prompt_tokens=48", "max_target_tokens=8",
            "--run-set", *small, "n=3", "tasks=[nq,aida]", "max_new_tokens=3", "fewshot=1",
            *([] if costs else ["--no-costs"])]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    """SIGKILL the whole process group once `ready()` holds (fails if the run ends first)."""
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def training_started(out: Path) -> bool:
    states = list((out / "train").glob("*/**/checkpoint/trainer_state.json"))
    return any(json.loads(p.read_text())["step"] >= 1 for p in states if p.stat().st_size)


def evaluation_started(out: Path) -> bool:
    return any(p.stat().st_size for p in (out / "preds").glob("*/*.jsonl")) if (out / "preds").exists() else False


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(n_layers=4).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.integration
def test_killed_in_training_and_in_evaluation_the_rerun_ends_with_the_same_files(tmp_path, model):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = start(command(whole, model))
    assert done.wait(timeout=1200) == 0, done.stderr.read()[-3000:]
    kill_when(start(command(cut, model)), lambda: training_started(cut), "training started")
    assert not (cut / "leaderboard.csv").exists()
    kill_when(start(command(cut, model)), lambda: evaluation_started(cut), "evaluation started")
    last = start(command(cut, model))
    assert last.wait(timeout=1200) == 0, last.stderr.read()[-3000:]
    for name in ("leaderboard.csv", "paired.csv"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name
    preds = sorted(p.relative_to(whole) for p in (whole / "preds").glob("*/*.jsonl"))
    assert len(preds) == 8 and all((cut / p).read_bytes() == (whole / p).read_bytes() for p in preds)
    manifest = json.loads((cut / "manifest.json").read_text())
    assert {"train:imprag", "train:ra-dit-llama", "eval", "stats"} <= set(manifest["wall_s"])
    assert len(manifest["commands_before"]) == 0 and manifest["machine"]["cpu_model"]
    assert len(manifest["invocations"]) == 3 and all(i["commit"] for i in manifest["invocations"])
    assert manifest["systems"]["imprag"]["recipe"] == "paper" and manifest["systems"]["imprag"]["checkpoint_sha256"]


@pytest.mark.integration
def test_outputs_of_the_headline_command(tmp_path, model):
    out = tmp_path / "run"
    proc = start(command(out, model, costs=True))
    assert proc.wait(timeout=1200) == 0, proc.stderr.read()[-3000:]
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["reference"]) == {"imprag"}
    assert set(paired["baseline"]) == {"closed-book", "bm25", "ra-dit-llama"}
    assert {"nq", "aida", "ALL:seen", "ALL:unseen-format", "ALL:all"} <= set(paired["scope"])
    costs = pd.read_csv(out / "costs.csv").set_index("system")
    assert set(costs.index) == {"closed-book", "bm25", "ra-dit-llama", "imprag"}
    assert costs.loc["imprag", "params_retriever"] == 0 and costs.loc["ra-dit-llama", "params_retriever"] > 0
    assert json.loads(costs.loc["imprag", "stage_s_per_example"]).keys() >= {"bottom", "reading", "decoding"}
    assert (costs["threads"] == 1).all() and costs["k"].nunique() == 1 and costs["dtype"].nunique() == 1
    assert costs.loc["imprag", "latency_ratio"] == 1.0 and (costs["passage_tokens"].dropna() == 64).all()
    config = json.loads((out / "config.json").read_text())
    specs = {s["label"]: s for s in config["systems"]}
    assert specs["bm25"]["passage_tokens"] == 64 and specs["ra-dit-llama"]["passage_tokens"] == 64
    assert (out / "headline.png").stat().st_size > 0 and "paired" in (out / "report.html").read_text()


def test_the_cpu_preset_trains_every_system_at_its_train_set_steps_and_a_later_set_wins(tmp_path):
    from imprag_bench.harness import cli  # noqa: F401  (registers the built-in systems)
    from imprag_bench.harness.reproduce import ReproducePreset, train_configs

    preset = ReproducePreset.load("cpu")
    assert preset.train_set == ["steps=150"]
    configs = train_configs(preset, tmp_path, [])
    assert len(configs) == 6 and {cfg["steps"] for _, cfg in configs} == {150}
    assert {cfg["steps"] for _, cfg in train_configs(preset, tmp_path, ["steps=7"])} == {7}


def test_a_resumed_manifest_keeps_the_earlier_invocations_and_the_time_of_a_killed_stage(tmp_path):
    from imprag_bench.harness.manifest import Manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"command": "first", "commit": "abc", "dirty": False,
                                                        "wall_s": {"train:imprag": 2.0},
                                                        "wall_s_running": {"eval": 12.0}}))
    first = Manifest(tmp_path, {"preset": "cpu"}, "second", tick=0.02)
    assert [i["command"] for i in first.data["invocations"]] == ["first", "second"]
    assert first.data["invocations"][0]["commit"] == "abc" and first.data["commands_before"] == ["first"]
    assert first.data["wall_s"] == {"train:imprag": 2.0, "eval": 12.0} and first.data["interrupted_stages"] == ["eval"]
    with first.timed("eval"):
        time.sleep(0.3)  # the ticker writes the running stage's time meanwhile
        running = json.loads((tmp_path / "manifest.json").read_text())["wall_s_running"]["eval"]
        assert 0 < running <= 0.3
    again = Manifest(tmp_path, {"preset": "cpu"}, "third")
    assert [i["command"] for i in again.data["invocations"]] == ["first", "second", "third"]
    assert 12.3 <= again.data["wall_s"]["eval"] < 13.0 and again.data["interrupted_stages"] == ["eval"]
    assert "wall_s_running" not in json.loads((tmp_path / "manifest.json").read_text())


def test_a_run_resumed_on_another_kind_of_cpu_keeps_the_dtypes_it_started_in(tmp_path, monkeypatch):
    from imprag_bench.harness import hardware
    from imprag_bench.harness.manifest import Manifest
    from imprag_bench.harness.reproduce import dtype_pin

    here = hardware.weight_dtype("auto", "cpu")
    new = dtype_pin(Manifest(tmp_path / "new", {}, "cmd"), "cpu")
    assert new == {"dtype": here, "bf16": here == "bfloat16", "train_set": []}
    # started on a CPU with native bf16 (a manifest from before dtypes were pinned: its machine says so) ...
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "cmd", "machine": {
        "auto_dtype": "bfloat16", "cpu_native_bf16": True}}))
    # ... resumed on one without: training, index builds and answers continue in bf16
    monkeypatch.setattr(hardware, "native_bf16", lambda *a, **k: False)
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda *a, **k: False)
    manifest = Manifest(tmp_path, {}, "cmd")
    assert dtype_pin(manifest, "cpu") == {"dtype": "bfloat16", "bf16": True, "train_set": ["bf16=true"]}
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["dtypes"] == {"weights": "bfloat16", "bf16": True}
    assert saved["invocations"][-1]["cpu_native_bf16"] is False


def test_matched_pairs_are_checked_and_follow_the_selected_systems():
    from imprag_bench.harness import cli  # noqa: F401
    from imprag_bench.harness.errors import UserError
    from imprag_bench.harness.reproduce import ReproducePreset

    preset = ReproducePreset.load("cpu")
    assert preset.pairs == [["imprag-cpu-additions", "ra-dit-llama-cpu-additions"]]
    assert preset.select(["bm25"]).pairs == []
    assert preset.select(["imprag-cpu-additions", "ra-dit-llama-cpu-additions"]).pairs == preset.pairs
    for bad in (["imprag"], ["imprag", "nope"], ["imprag", "imprag"]):
        with pytest.raises(UserError, match="pairs entry"):
            ReproducePreset("t", "quick", "imprag", {}, preset.systems, pairs=[bad]).validated()


def test_the_stats_stage_writes_the_references_deltas_and_each_matched_pair(tmp_path):
    from imprag_bench.harness import cli, report  # noqa: F401
    from imprag_bench.harness.reproduce import ReproducePreset, stats

    systems = [{"label": s, "spec": "closed-book"} for s in ("imprag", "rival", "imprag-x", "rival-x")]
    preset = ReproducePreset("t", "quick", "imprag", {}, systems, pairs=[["imprag-x", "rival-x"]]).validated()
    records = []
    for k, label in enumerate(s["label"] for s in systems):
        lines = [json.dumps({"system": label, "task": task, "group": group, "id": f"{task}-{i}",
                             "em": float((i + k) % 2), "f1": float((i + k) % 2),
                             "recall": float(i % 3 == 0)})
                 for task, group in (("nq", "seen"), ("trex", "unseen-format")) for i in range(6)]
        (tmp_path / "preds" / label).mkdir(parents=True)
        (tmp_path / "preds" / label / "all.jsonl").write_text("\n".join(lines) + "\n")
        records += [json.loads(x) for x in lines]
    report.write_csv(report.leaderboard(records, n_boot=50), tmp_path / "leaderboard.csv")
    stats(preset, tmp_path)
    table = pd.read_csv(tmp_path / "paired.csv")
    pairs = set(zip(table["reference"], table["baseline"]))
    assert pairs == {("imprag", "rival"), ("imprag", "imprag-x"), ("imprag", "rival-x"), ("imprag-x", "rival-x")}
    mine = table[(table["reference"] == "imprag-x") & (table["scope"] == "ALL:all") & (table["metric"] == "em")]
    assert mine["delta"].item() == 0.0  # every example differs, in turn either way: equal means
    assert (tmp_path / "headline.png").stat().st_size > 0


def test_checkpoint_of_evaluates_a_trained_checkpoint_again_with_its_own_options():
    """The pooling preset's centred rows: `checkpoint_of` reuses another entry's checkpoint (nothing more
    trains), `options` are validated against the system's declared options before anything runs, and
    selecting such a row keeps the entry it reads."""
    from imprag_bench.harness import cli  # noqa: F401
    from imprag_bench.harness.errors import UserError
    from imprag_bench.harness.reproduce import ReproducePreset, system_entries, train_configs

    preset = ReproducePreset.load("pooling")
    picked = preset.select(["ra-dit-llama-mean-centre"])
    assert [s["label"] for s in picked.systems] == ["untrained-last", "ra-dit-llama-mean", "ra-dit-llama-mean-centre"]
    assert [s["label"] for s, _ in train_configs(picked, Path("out"), [])] == ["ra-dit-llama-mean"]
    entries = system_entries(picked, {"ra-dit-llama-mean": Path("ck")}, "cpu", bf16=False)
    assert entries[2] == {"name": "ra-dit-llama", "checkpoint": "ck", "centre": True, "bf16": False,
                          "label": "ra-dit-llama-mean-centre"}
    assert entries[1]["checkpoint"] == "ck" and "centre" not in entries[1]
    base = [{"label": "a", "train": "imprag"}]
    for bad, match in (({"label": "b", "checkpoint_of": "nope"}, "not a trained system"),
                       ({"label": "b", "checkpoint_of": "a", "options": {"centre": "maybe"}}, "centre"),
                       ({"label": "b", "checkpoint_of": "a", "options": {"pooling": "max"}}, "last, mean"),
                       ({"label": "b", "checkpoint_of": "a", "options": {"checkpoint": "x"}}, "mapping"),
                       ({"label": "b", "checkpoint_of": "a", "train": "imprag"}, "exactly one")):
        with pytest.raises(UserError, match=match):
            ReproducePreset("t", "quick", "a", {}, base + [bad]).validated()


def test_reproduce_help_names_every_preset():
    from importlib import resources

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "imprag_bench.harness.cli", "reproduce", "--help"], cwd=root,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    text = " ".join(res.stdout.split())
    folder = resources.files("imprag_bench.harness.presets").joinpath("reproduce")
    for name in sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")):
        assert re.search(rf"[ |]{re.escape(name)}( |$)", text), name
