"""One writer per folder: an OS file lock (`fcntl.flock`) on `<folder>/.imprag-bench.lock`, held for the life of
the command that writes there (a run, a training, a reproduce, an index build).

A second command on the same folder stops at once with one message naming the folder and the holder's pid
(a UserError: exit 2, nothing written). The OS drops the lock when its process ends, however it ends, so a
killed command never leaves a stale lock behind. Under torchrun rank 0 takes the lock for its job and tells
the other ranks (one collective), so all ranks of the job go on, or all stop with the same message. Within one
process the lock is re-entrant: `reproduce` holds its folder while the runner it calls locks the same one.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from imprag_bench.harness import dist
from imprag_bench.harness.errors import UserError

LOCK = ".imprag-bench.lock"
_HELD: dict[str, int | None] = {}  # resolved folder -> the lock file's descriptor (None on ranks > 0: every rank
# records what its job holds, so a nested lock of the same folder is skipped on all ranks alike)


def _take(folder: Path) -> tuple[int | None, str]:
    """(descriptor, "") with the lock held, or (None, holder's pid as written in the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return None, holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, ""


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder"):
    """Hold `folder`'s writer lock for the `with` block (every rank of a torchrun job calls it together)."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        yield
        return
    fd, holder = _take(folder) if dist.rank_world()[0] == 0 else (None, "")
    if dist.any_rank(dist.rank_world()[0] == 0 and fd is None):
        raise UserError(f"{folder}: another command is writing this {what} (pid {holder or 'on rank 0'}); "
                        "wait for it to end, or use another folder")
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
