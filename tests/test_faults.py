"""Faults beyond bad input: a second writer on a run folder, a stale lock, a full disk. Each ends with one
message and the right exit code, and no completed file is lost or doubled; after the fault the same command
ends with the files of an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
RUN = [sys.executable, "-m", "imprag_bench.harness.cli", "run", "--tasks", "nq", "--systems", "bm25",
       "--dtype", "float32"]
HOLD = ("import sys, time\nfrom imprag_bench.harness.locks import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *map(str, args)], cwd=ROOT, env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=900, **kw)


def errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "error:" in ln]


def outputs(out: Path) -> dict[str, bytes]:
    files = sorted(out.glob("preds/*/*.jsonl")) + [out / "leaderboard.csv"]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_a_second_writer_stops_at_once_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    second = cli("--examples", "2", "--out", out)
    assert second.returncode == 2, second.stderr[-2000:]
    assert errors(second.stderr) == [f"imprag-bench: error: {out}: another command is writing this run folder "
                                     f"(pid {holder.pid}); wait for it to end, or use another folder"]
    assert "Traceback" not in second.stderr and sorted(p.name for p in out.iterdir()) == [".imprag-bench.lock"]
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    again = cli("--examples", "2", "--out", out)  # the OS released the killed holder's lock
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.integration
def test_two_concurrent_runs_on_one_folder_give_one_result_without_duplicates(tmp_path):
    out = tmp_path / "o7"
    first = subprocess.Popen([*RUN, "--examples", "30", "--out", str(out)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = out / ".imprag-bench.lock"
    t0 = time.time()
    while not (lock.exists() and lock.read_text().strip()) and time.time() - t0 < 300:
        time.sleep(0.1)
    second = cli("--examples", "30", "--out", out)
    assert first.wait(timeout=900) == 0, first.stderr.read()[-2000:]
    assert second.returncode == 2 and len(errors(second.stderr)) == 1, second.stderr[-2000:]
    assert f"(pid {first.pid})" in second.stderr
    ids = [json.loads(ln)["id"] for ln in (out / "preds/bm25/nq.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 30


def _small_disk(folder: Path, kb: int) -> bool:
    folder.mkdir(parents=True)
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.integration
def test_a_full_disk_ends_in_one_message_and_the_rerun_with_space_ends_as_an_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    assert cli("--examples", "4", "--out", ref).returncode == 0
    disk = tmp_path / "disk"
    mounted = _small_disk(disk, 48)  # a tmpfs too small for the plots and report; else the write hook
    out = disk / "run"
    try:
        fault = {} if mounted else {"IMPRAG_BENCH_FAIL_WRITES": "leaderboard.csv"}
        full = cli("--examples", "4", "--out", out, env=fault)
        assert full.returncode == 1, full.stderr[-3000:]
        assert "Traceback" not in full.stderr and len(errors(full.stderr)) == 1, full.stderr[-3000:]
        assert "No space left on device (it needs free space on its disk)" in full.stderr
        kept = {p: b for p, b in outputs(ref).items() if (out / p).exists()}
        assert all((out / p).read_bytes() == b for p, b in kept.items() if p.endswith(".csv"))
        if mounted:  # free space: the same command resumes
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = cli("--examples", "4", "--out", out)
        assert again.returncode == 0, again.stderr[-3000:]
        assert outputs(out) == outputs(ref)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_cache_file_that_does_not_match_its_digest_is_not_trusted(tmp_path):
    from imprag_bench.harness.io import read_verified, write_verified

    path = tmp_path / "candidates.jsonl"
    write_verified(path, '{"id": "a"}\n{"id": "b"}\n')
    assert read_verified(path) == '{"id": "a"}\n{"id": "b"}\n'
    path.write_text('{"id": "a"}\n{"id"')  # cut mid-line
    assert read_verified(path) is None


def test_a_truncated_checkpoint_file_is_refused_by_name(tmp_path):
    from imprag_bench.harness.errors import UserError
    from imprag_bench.harness.training.loop import TrainConfig, train
    from tests import engine_driver as d

    cfg = TrainConfig(out=str(tmp_path), steps=4, batch_size=4, lr=1e-3, ckpt_every=2, stop_after=2)
    train(d.objective("imprag"), d.items(), cfg)
    state = json.loads((tmp_path / "checkpoint/trainer_state.json").read_text())
    assert "dcp/.metadata" in state["files"] and "extra.pt" in state["files"]
    shard = next(p for p in (tmp_path / "checkpoint/dcp").iterdir() if p.suffix == ".distcp")
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(UserError, match=rf"{shard.name}: damaged checkpoint file \(100 bytes"):
        train(d.objective("imprag"), d.items(), cfg)


BUILD = ("import sys, numpy as np\nfrom imprag_bench.harness.index import build_index\n"
         "v = np.random.default_rng(0).normal(size=(4000, 64)).astype(np.float32)\n"
         "build_index(sys.argv[1], [str(i) for i in range(len(v))], lambda s, e: v[s:e], {'k': 1}, shard_size=1000)\n")


@pytest.mark.integration
def test_an_index_build_on_a_full_disk_is_an_error_naming_the_file_not_a_crash(tmp_path):
    disk = tmp_path / "disk"
    if not _small_disk(disk, 300):  # the memmapped shards bypass the write hook: needs a real small file system
        pytest.skip("no small tmpfs can be mounted here")
    try:
        out = subprocess.run([sys.executable, "-c", BUILD, str(disk / "ix")], cwd=ROOT, env=ENV, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 1 and "OSError: [Errno 28] No space left on device" in out.stderr, out.stderr[-2000:]
        named = [ln for ln in out.stderr.splitlines() if ln.startswith("OSError: [Errno 28]")]
        assert named and str(disk / "ix") in named[-1]  # the file it was writing (no SIGBUS)
        done = sorted(p.name for p in (disk / "ix").glob("shard_*.npy"))
        assert done and all(np.load(disk / "ix" / n).shape == (1000, 64) for n in done)  # completed shards intact
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
