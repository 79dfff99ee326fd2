"""Facts a result folder records about how it was made: the code's commit, the machine, checkpoint digests, and
the reproduce command's manifest.json (Manifest)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from imprag_bench.harness.assets import sha256_file
from imprag_bench.harness.io import atomic_write_text


def git_state(cwd: str | Path | None = None) -> dict:
    """{"commit": HEAD, "dirty": uncommitted changes} of the repository the code runs from (None outside git)."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty if commit else None}


def machine() -> dict:
    """CPU model, threads, native bf16, library versions, GPU (harness.hardware.machine_facts)."""
    from imprag_bench.harness.hardware import machine_facts

    return machine_facts()


def folder_sha256(folder: str | Path) -> str:
    """sha256 over a checkpoint folder's files (names and contents, sorted; optimizer state excluded)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "optimizer.pt"):
        h.update(str(f.relative_to(folder)).encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


class Manifest:
    """manifest.json of a reproduce folder, read on start so that a resumed run adds to it: every invocation
    with its commit, and the wall time per stage summed over invocations. A stage's running time is written
    every `tick` seconds while it runs, so a run killed mid-stage still counts the time it spent there."""

    def __init__(self, out: Path, head: dict, command: str, tick: float = 30.0):
        self.path = Path(out) / "manifest.json"
        self.tick = tick
        self._lock = threading.Lock()
        old = json.loads(self.path.read_text()) if self.path.exists() else {}
        wall = dict(old.get("wall_s", {}))
        cut = old.get("wall_s_running", {})  # the stage a killed invocation was in, up to its last tick
        for stage, seconds in cut.items():
            wall[stage] = round(wall.get(stage, 0.0) + seconds, 1)
        state, here = git_state(), machine()
        self.data = {**head, "command": command, "commands_before": old.get("commands_before", [])
                     + ([old["command"]] if old.get("command") and old["command"] != command else []),
                     **state, "machine": here, "wall_s": wall, "dtypes": self._dtypes(old),
                     "interrupted_stages": old.get("interrupted_stages", []) + sorted(cut),
                     "invocations": self._before(old) + [{"command": command, **state,
                                                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                          "cpu_model": here["cpu_model"],
                                                          "cpu_native_bf16": here["cpu_native_bf16"]}],
                     "systems": old.get("systems", {}), **({"run_config": old["run_config"]}
                                                           if "run_config" in old else {})}

    @staticmethod
    def _dtypes(old: dict) -> dict | None:
        """The dtypes the run started in (a manifest from before they were pinned: its machine's)."""
        if old.get("dtypes") or "machine" not in old:
            return old.get("dtypes")
        return {"weights": old["machine"]["auto_dtype"], "bf16": bool(old["machine"]["cpu_native_bf16"])}

    def pin_dtypes(self, here: dict) -> dict:
        """The run's dtypes ({"weights": LM weight dtype, "bf16": autocast}): those it started in, so that a run
        resumed on another kind of machine trains, indexes and answers as it began (slower where they are
        emulated) instead of mixing dtypes; `here` (what `auto` picks on this machine) for a new run."""
        pin = self.data.get("dtypes") or dict(here)
        self.data["dtypes"] = pin
        if pin != here:
            from imprag_bench.harness.assets import log

            log(f"reproduce: this run started in {pin} ({here} is native here): it continues in its own dtypes")
        self.save()
        return pin

    @staticmethod
    def _before(old: dict) -> list[dict]:
        """The earlier invocations (a manifest from before they were listed: its last command and commit)."""
        if "invocations" in old or not old.get("command"):
            return old.get("invocations", [])
        return [{"command": old["command"], "commit": old.get("commit"), "dirty": old.get("dirty")}]

    def add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.data["wall_s"][stage] = round(self.data["wall_s"].get(stage, 0.0) + seconds, 1)
            self.data.pop("wall_s_running", None)
        self.save()

    @contextmanager
    def timed(self, stage: str):
        """Time `stage` into wall_s; while it runs, its elapsed time is saved every `tick` seconds."""
        t0, stop = time.perf_counter(), threading.Event()

        def ticker():
            while not stop.wait(self.tick):
                with self._lock:
                    self.data["wall_s_running"] = {stage: round(time.perf_counter() - t0, 1)}
                self.save()

        thread = threading.Thread(target=ticker, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.add_time(stage, time.perf_counter() - t0)

    def save(self) -> None:
        from imprag_bench.harness import dist

        if dist.rank_world()[0] != 0:  # under torchrun rank 0 keeps the manifest
            return
        with self._lock:
            atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True, default=str))
