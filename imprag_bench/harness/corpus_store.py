"""A corpus written once to disk and read memory-mapped by row: one copy shared by every rank and command.

Layout of a store folder (written to a temporary sibling, renamed into place when complete):

- passages.arrow: the passages as an Arrow IPC stream (columns id, title, text; record batches of BATCH rows),
  the format `datasets` keeps its own caches in (`datasets.Dataset.from_file` opens it too). Read through
  `pyarrow.memory_map`: the rows live in the OS page cache, shared by all processes, not in a process's heap.
- ids_sorted.npy, ids_order.npy (unless the ids are the consecutive integers start..start+n-1, DPR's "1".."N",
  where row = int(id) - start needs nothing): the ids sorted (int64, or UTF-8 bytes for non-integer ids) and
  the row of each, memory-mapped; an id is found by binary search (16 B per passage on disk, none in RAM).
- meta.json, written last: schema version, row count, file sizes, the id map's kind, the digest
  (Corpus.digest(), computed while writing) and the source the caller described. A folder without a
  complete meta.json, or whose files do not have the recorded sizes, is rebuilt.

Writers: the first process of each machine (LOCAL_RANK 0; any plain command) takes the folder's file lock
(`<folder>.lock`, fcntl.flock, so two commands never write one store twice) and writes; other local ranks
poll until meta.json appears, then open it. No torch.distributed collective is used: the corpus is also
loaded by rank 0 alone (the HTML report), where a barrier would wait forever. Ids are checked unique while
writing (the list Corpus's UserError).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from imprag_bench.harness import dist
from imprag_bench.harness.corpus import PassageStore, update_digest
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage

SCHEMA_VERSION = 1
DATA, META, SORTED, ORDER = "passages.arrow", "meta.json", "ids_sorted.npy", "ids_order.npy"
BATCH = 8192  # rows per Arrow record batch (~5 MB of 100-word passages)
POLL_S = 1.0
COLUMNS = ("id", "title", "text")


def _schema():
    import pyarrow as pa
    return pa.schema([(c, pa.string()) for c in COLUMNS])


def read_meta(folder: Path) -> dict | None:
    """The store's metadata if the store is complete (meta.json whole, files of the recorded sizes), else None."""
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("schema_version") != SCHEMA_VERSION:
            return None
        if any((folder / name).stat().st_size != size for name, size in meta["files"].items()):
            return None
        int(meta["rows"]), str(meta["digest"]), meta["id_map"]["kind"]
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_store(folder: str | os.PathLike, passages: Callable[[], Iterable[Passage]], name: str,
               source: dict | None = None) -> "StoredPassages":
    """The store in `folder`, written first from `passages()` (called only then) if it is missing or incomplete.

    name: the corpus name in messages (duplicate ids). source: what the passages are (kept in meta.json).
    """
    folder = Path(folder)
    if read_meta(folder) is None:
        if dist.local_rank() == 0:
            with _locked(folder):
                if read_meta(folder) is None:  # another command may have written it while we waited
                    write_store(folder, passages(), name, source)
        else:
            _wait(folder)
    return StoredPassages(folder)


def _wait(folder: Path) -> None:
    from imprag_bench.harness.assets import log
    deadline = time.monotonic() + dist.TIMEOUT_HOURS * 3600
    log(f"local rank {dist.local_rank()}: waiting for local rank 0 to write the corpus store {folder}")
    while read_meta(folder) is None:
        if time.monotonic() > deadline:
            raise UserError(f"corpus store {folder} was not written within {dist.TIMEOUT_HOURS} h by local rank 0")
        time.sleep(POLL_S)


class _locked:
    def __init__(self, folder: Path):
        self.path = folder.parent / f"{folder.name}.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # blocks while another command writes this store

    def __exit__(self, *exc):
        os.close(self.fd)


def _is_int(s: str) -> bool:
    """A canonical non-negative decimal that fits int64 ("7", not "07", "+7" or "７")."""
    return s.isascii() and s.isdigit() and len(s) <= 18 and (s[0] != "0" or s == "0")


class _IdCollector:
    """The ids seen while writing, kept compactly: int64 while every id is a canonical integer, else bytes."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.ints = True

    def add(self, ids: list[str]) -> None:
        if self.ints and not all(_is_int(s) for s in ids):
            self.ints = False
            self.parts = [np.array([str(v).encode() for v in part]) for part in self.parts]
        self.parts.append(np.array([int(s) for s in ids], dtype=np.int64) if self.ints
                          else np.array([s.encode() for s in ids], dtype=bytes))

    def finish(self, folder: Path, name: str) -> dict:
        """Check the ids are unique (the list Corpus's error otherwise), write the index, return its meta."""
        if not self.parts:
            return {"kind": "range", "start": 0}
        keys = np.concatenate(self.parts)
        self.parts = []
        if self.ints and (keys.size == 1 or bool((np.diff(keys) == 1).all())):
            return {"kind": "range", "start": int(keys[0])}
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        dup = np.flatnonzero(ordered[1:] == ordered[:-1])
        if dup.size:  # the first row whose id was seen before, as the list Corpus reports it
            row = int(order[dup + 1].min())
            pid = str(keys[row]) if self.ints else keys[row].decode()
            raise UserError(f"corpus {name}: duplicate passage id {pid!r}")
        np.save(folder / SORTED, ordered)
        np.save(folder / ORDER, order.astype(np.int64))
        return {"kind": "sorted_int" if self.ints else "sorted_bytes"}


def write_store(folder: Path, passages: Iterable[Passage], name: str, source: dict | None = None) -> dict:
    """Write `passages` as a store at `folder` (replacing an incomplete one); returns its metadata."""
    import pyarrow as pa

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        h, ids, n, start = hashlib.sha256(), _IdCollector(), 0, time.time()
        with pa.OSFile(str(tmp / DATA), "wb") as sink, pa.ipc.new_stream(sink, _schema()) as writer:
            cols: tuple[list, list, list] = ([], [], [])
            for p in passages:
                update_digest(h, p)
                for col, value in zip(cols, (p.id, p.title, p.text)):
                    col.append(value)
                if len(cols[0]) >= BATCH:
                    n += _flush(writer, cols, ids)
            n += _flush(writer, cols, ids)
        meta = {"schema_version": SCHEMA_VERSION, "rows": n, "digest": h.hexdigest(),
                "id_map": ids.finish(tmp, name), "columns": list(COLUMNS), "source": source or {},
                "write_seconds": round(time.time() - start, 1)}
        meta["files"] = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
        (tmp / META).write_text(json.dumps(meta, indent=1))
        if folder.exists():
            if read_meta(folder) is not None:  # written meanwhile by a process that does not share our lock
                shutil.rmtree(tmp)
                return read_meta(folder)
            shutil.rmtree(folder)  # incomplete: rebuilt
        os.rename(tmp, folder)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _flush(writer, cols: tuple[list, list, list], ids: _IdCollector) -> int:
    import pyarrow as pa
    n = len(cols[0])
    if n:
        writer.write_batch(pa.record_batch([pa.array(c, pa.string()) for c in cols], schema=_schema()))
        ids.add(cols[0])
        for c in cols:
            c.clear()
    return n


def _rows(key, n: int) -> range | int:
    """An int row (IndexError when out of range) or a range of rows for a slice."""
    if isinstance(key, slice):
        return range(n)[key]
    i = int(key)
    if not -n <= i < n:
        raise IndexError(f"row {key} out of range for {n} rows")
    return i % n


class _Column(Sequence):
    """One derived column of a store (ids or texts), read by row."""

    def __init__(self, store: "StoredPassages", read: Callable[[int, int], list[str]]):
        self.store, self.read = store, read

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, key):
        rows = _rows(key, len(self.store))
        if isinstance(rows, int):
            return self.read(rows, rows + 1)[0]
        if rows.step == 1:
            return self.read(rows.start, rows.stop) if len(rows) else []
        return [self.read(r, r + 1)[0] for r in rows]

    def __iter__(self) -> Iterator[str]:
        for s in range(0, len(self.store), BATCH):
            yield from self.read(s, min(s + BATCH, len(self.store)))


class _RowsById(Mapping):
    """id -> row over the store's id index (nothing is held in RAM beyond what the lookups touch)."""

    def __init__(self, store: "StoredPassages", meta: dict):
        self.store, self.kind = store, meta["id_map"]["kind"]
        self.start = meta["id_map"].get("start", 0)
        if self.kind != "range":
            self.sorted = np.load(store.folder / SORTED, mmap_mode="r")
            self.order = np.load(store.folder / ORDER, mmap_mode="r")

    def __getitem__(self, pid) -> int:
        n = len(self.store)
        if not isinstance(pid, str):
            raise KeyError(pid)
        if self.kind == "range":
            if _is_int(pid) and 0 <= int(pid) - self.start < n:
                return int(pid) - self.start
            raise KeyError(pid)
        if self.kind == "sorted_int":
            if not _is_int(pid):
                raise KeyError(pid)
            key = np.int64(int(pid))
        else:
            key = pid.encode()
        j = int(np.searchsorted(self.sorted, key))
        if j < n and self.sorted[j] == key:
            row = int(self.order[j])
            if self.kind == "sorted_int" or self.store.ids[row] == pid:  # bytes arrays drop trailing NULs
                return row
        raise KeyError(pid)

    def __len__(self) -> int:
        return len(self.store)

    def __iter__(self) -> Iterator[str]:
        return iter(self.store.ids)


class StoredPassages(PassageStore):
    """The passages of a complete store, memory-mapped (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        import pyarrow as pa

        self.folder = Path(folder)
        meta = read_meta(self.folder)
        if meta is None:
            raise UserError(f"corpus store {self.folder} is incomplete (no complete {META}); delete it to rebuild")
        self.meta = meta
        table = pa.ipc.open_stream(pa.memory_map(str(self.folder / DATA), "r")).read_all()
        if table.num_rows != meta["rows"]:
            raise UserError(f"corpus store {self.folder}: {table.num_rows} rows, {META} says {meta['rows']}")
        self._id, self._title, self._text = (table.column(c) for c in COLUMNS)
        self._by_id = _RowsById(self, meta)

    def __reduce__(self):  # reopen the mapping in another process instead of copying the rows
        return StoredPassages, (self.folder,)

    def __repr__(self) -> str:
        return f"StoredPassages({str(self.folder)!r}, rows={len(self)})"

    def __len__(self) -> int:
        return self.meta["rows"]

    def _passages(self, s: int, e: int) -> list[Passage]:
        cols = [c.slice(s, e - s).to_pylist() for c in (self._id, self._title, self._text)]
        return [Passage(i, t, x) for i, t, x in zip(*cols)]

    def __getitem__(self, key):
        rows = _rows(key, len(self))
        if isinstance(rows, int):
            return self._passages(rows, rows + 1)[0]
        return self._passages(rows.start, rows.stop) if rows.step == 1 and len(rows) else self.take(list(rows))

    def __iter__(self) -> Iterator[Passage]:
        for s in range(0, len(self), BATCH):
            yield from self._passages(s, min(s + BATCH, len(self)))

    def take(self, rows: list[int]) -> list[Passage]:
        if not rows:
            return []
        cols = (self._id, self._title, self._text)  # scalar reads: Table.take may concatenate the chunks
        return [Passage(*(c[r].as_py() for c in cols)) for r in (_rows(r, len(self)) for r in rows)]

    def _read_ids(self, s: int, e: int) -> list[str]:
        return self._id.slice(s, e - s).to_pylist()

    def _read_texts(self, s: int, e: int) -> list[str]:
        titles, texts = self._title.slice(s, e - s).to_pylist(), self._text.slice(s, e - s).to_pylist()
        return [f"{t}\n{x}" if t else x for t, x in zip(titles, texts)]  # Passage.as_text()

    @property
    def ids(self) -> Sequence[str]:
        return _Column(self, self._read_ids)

    @property
    def texts(self) -> Sequence[str]:
        return _Column(self, self._read_texts)

    @property
    def rows_by_id(self) -> Mapping[str, int]:
        return self._by_id

    def digest(self) -> str:
        return self.meta["digest"]
