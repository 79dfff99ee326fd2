"""File primitives every writer and reader of the harness shares: atomic writes and checked JSONL.

Writers go through a temporary file in the target's folder and one rename, so a reader (or a run killed
mid-write) never sees half a file. JSONL readers report the file and 1-based line of any broken line.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from imprag_bench.harness.errors import UserError


# errno of a write that failed for the environment, not the input -> what the path needed (harness.cli: exit 1)
WRITE_ERRNOS = {errno.ENOSPC: "free space on its disk", errno.EDQUOT: "room in the disk quota",
                errno.EACCES: "write permission", errno.EPERM: "write permission",
                errno.EROFS: "a writable file system", errno.EFBIG: "a larger file size limit"}
FAULT_ENV = "IMPRAG_BENCH_FAIL_WRITES"  # fault injection for tests: writes to paths containing it fail (ENOSPC)


def check_writable(path: str | os.PathLike) -> None:
    """The fault hook every write of the harness passes: with $IMPRAG_BENCH_FAIL_WRITES set, a path containing its
    text fails as a full disk would (tests/test_faults.py, where no small tmpfs can be mounted)."""
    fault = os.environ.get(FAULT_ENV)
    if fault and fault in str(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _named(e: OSError, path) -> OSError:
    """The error with the file it was writing (a failed write() on an open file carries no name)."""
    return e if e.filename else OSError(e.errno, e.strerror, str(path))


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        check_writable(path)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    return path


def write_verified(path: str | os.PathLike, text: str) -> None:
    """Write a cache file and, after it, `<file>.sha256` with its digest: `read_verified` trusts only a file
    that matches it (a truncated or altered cache is then rebuilt, not parsed into garbage)."""
    data = text.encode()
    atomic_write_bytes(path, data)
    atomic_write_text(f"{path}.sha256", hashlib.sha256(data).hexdigest() + "\n")


def read_verified(path: str | os.PathLike) -> str | None:
    """The text of a cache file written by `write_verified`, or None when it is missing or does not match its
    digest (a file of an earlier version, without a digest, is read as it is)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    digest = Path(f"{path}.sha256")
    if digest.exists() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        return None
    return data.decode("utf-8", errors="replace")


def append_durably(f: IO, path: str | os.PathLike, text: str) -> None:
    """Append `text` to the open file `f` of `path` and sync it to disk (a killed or failed write leaves at most
    a partial last line, which the resume cuts)."""
    try:
        check_writable(path)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise _named(e, path) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), binary=True)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", object) for each non-blank line; a broken line (not UTF-8, not JSON, not an
    object) is a UserError naming it."""
    path = Path(path)
    try:
        f = open(path, "rb")  # decoded line by line, so a non-UTF-8 byte is reported at its line
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a leading BOM is dropped
            except UnicodeDecodeError as e:
                raise UserError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                                "line); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); "
                                f"expected one JSON object per line") from None
            if not isinstance(obj, dict):
                raise UserError(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
            yield where, obj
