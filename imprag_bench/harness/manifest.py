"""Facts a result folder records about how it was made: the code's commit, the machine, checkpoint digests."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from imprag_bench.harness.assets import sha256_file


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
