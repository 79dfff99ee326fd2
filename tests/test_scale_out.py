"""torchrun with 2 CPU processes (gloo): a sharded index equals the one-process index (same shards, same
Flat index and IVF-PQ index bytes, same search results), a sharded evaluation equals the one-process files
byte for byte, and a run killed part-way resumes to the same files (under torchrun or in one process)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.toy  # noqa: F401  (registers the toy task and the echo system)
from imprag_bench.harness.cli import main
from tests.dist_driver import CHUNK, FACTORIES, N, SHARD, build
from tests.proc_tree import kill_tree

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "dist_driver.py"
ARGS = ["run", "--tasks", "toy", "--systems", "echo", "--corpus", "toy", "--fewshot", "0", "--k", "1",
        "--batch-size", "1"]


def _torchrun(*argv, env_extra=None, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2",
           str(DRIVER), *map(str, argv)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if wait:
        log = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 0, log[-3000:]
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    """Every prediction, leaderboard and config file by relative path (config.json without its `out`)."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix in (".jsonl", ".csv", ".json")}
    cfg = json.loads(files["config.json"])
    assert cfg.pop("out") == str(folder)
    files["config.json"] = json.dumps(cfg, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return _files(out)


def test_sharded_index_equals_one_process_index(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    build(one)
    _torchrun("index", two)
    n_shards = -(-N // SHARD)
    for name in FACTORIES:
        for s in range(n_shards):
            assert (one / name / f"shard_{s:05d}.npy").read_bytes() == (two / name / f"shard_{s:05d}.npy").read_bytes()
        file = json.loads((one / name / "manifest.json").read_text())["indexes"][FACTORIES[name]]["file"]
        assert (one / name / file).read_bytes() == (two / name / file).read_bytes(), name
        assert (one / name / "manifest.json").read_text() == (two / name / "manifest.json").read_text()
    ref = json.loads((one / "rank0.json").read_text())
    r0, r1 = (json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["search"] == r1["search"] == ref["search"]  # both ranks load the same index
    # shard s is encoded by rank s % 2, in calls of at most CHUNK passages
    for r, res in ((0, r0), (1, r1)):
        starts = sorted({s // SHARD for name, s, e in res["calls"] if name == "flat"})
        assert starts == list(range(r, n_shards, 2))
        assert all(e - s <= CHUNK for _, s, e in res["calls"])
    assert sorted(c for r in (r0, r1) for c in r["calls"]) == sorted(ref["calls"])


def test_sharded_evaluation_equals_one_process_byte_for_byte(tmp_path, one_process_run):
    out = tmp_path / "run"
    _torchrun("run", *ARGS, "--out", out)
    assert _files(out) == one_process_run
    assert not list(out.glob("preds/*/*.rank*.jsonl"))


def test_killed_sharded_run_resumes_to_identical_files(tmp_path, one_process_run):
    out = tmp_path / "run"
    proc = _torchrun("run", *ARGS, "--out", out, env_extra={"TOY_DELAY": "0.3"}, wait=False)
    part = out / "preds" / "echo" / "toy.rank0.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and (not part.exists() or len(part.read_text().splitlines()) < 4):
        time.sleep(0.05)
    kill_tree(proc.pid)  # torchrun and its workers
    proc.wait(10)
    assert not (out / "leaderboard.csv").exists(), "the run must be killed part-way"
    with open(part, "a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"system": "echo", "task": "toy", "id": "toy-')
    other = tmp_path / "resumed-in-one-process"
    shutil.copytree(out, other)
    _torchrun("run", *ARGS, "--out", out)
    assert _files(out) == one_process_run
    assert main([*ARGS, "--out", str(other)]) == 0  # a torchrun run finished by one process
    assert _files(other) == one_process_run


def test_killed_sharded_index_build_resumes_to_the_one_process_index(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    build(one)
    proc = _torchrun("index", two, env_extra={"INDEX_DELAY": "0.2"}, wait=False)
    deadline = time.time() + 90
    while time.time() < deadline and len(list((two / "flat").glob("shard_*.npy"))) < 3:
        time.sleep(0.05)
    kill_tree(proc.pid)  # torchrun and its workers
    proc.wait(10)
    assert not (two / "flat" / "manifest.json").exists(), "the build must be killed part-way"
    _torchrun("index", two)
    for name in FACTORIES:
        for f in sorted((one / name).iterdir()):
            if f.name != ".imprag-bench.lock":
                assert f.read_bytes() == (two / name / f.name).read_bytes(), (name, f.name)
    assert json.loads((two / "rank0.json").read_text())["search"] == json.loads((one / "rank0.json").read_text())["search"]
