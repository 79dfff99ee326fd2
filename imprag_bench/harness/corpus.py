"""The knowledge corpus: passages {id, title, text}, looked up by id, with a content hash.

The hash binds indexes to the exact corpus they were built from (see imprag_bench/harness/index.py).

Two backings, one interface: a list of Passages (mini-KILT, local files) or a `PassageStore`, a corpus read
lazily by row from disk (the hub corpus: imprag_bench/harness/corpus_store.py, a memory-mapped Arrow file).
For a store `ids` and `texts` are Sequences (len, integer index, slices read by row), ids map to rows
through the store's own compact index, and the digest is the one recorded when the store was written.
"""
from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Iterable

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage


class PassageStore(Sequence):
    """A corpus read by row (row -> Passage, slices -> lists of Passages) whose ids are known unique."""

    @property
    @abstractmethod
    def ids(self) -> Sequence[str]:
        """The passage ids in row order (a Sequence read by row)."""

    @property
    @abstractmethod
    def texts(self) -> Sequence[str]:
        """`Passage.as_text()` of every row in order (a Sequence read by row)."""

    @property
    @abstractmethod
    def rows_by_id(self) -> Mapping[str, int]:
        """id -> row (KeyError for an unknown id)."""

    @abstractmethod
    def digest(self) -> str:
        """The Corpus.digest() of these passages, recorded when they were written."""

    def take(self, rows: list[int]) -> list[Passage]:
        return [self[r] for r in rows]


@dataclass
class Corpus:
    """An ordered, id-addressable list of passages (or a PassageStore standing in for one)."""

    name: str
    passages: Sequence[Passage]
    _by_id: Mapping[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if isinstance(self.passages, PassageStore):  # ids were checked unique when the store was written
            self._by_id = self.passages.rows_by_id
            return
        for i, p in enumerate(self.passages):
            if p.id in self._by_id:
                raise UserError(f"corpus {self.name}: duplicate passage id {p.id!r}")
            self._by_id[p.id] = i

    def __len__(self) -> int:
        return len(self.passages)

    def __getitem__(self, pid: str) -> Passage:
        return self.passages[self._by_id[pid]]

    def get_many(self, ids: Iterable[str]) -> list[Passage]:
        if isinstance(self.passages, PassageStore):
            return self.passages.take([self._by_id[i] for i in ids])
        return [self[i] for i in ids]

    @property
    def texts(self) -> Sequence[str]:
        if isinstance(self.passages, PassageStore):
            return self.passages.texts
        return [p.as_text() for p in self.passages]

    @property
    def ids(self) -> Sequence[str]:
        if isinstance(self.passages, PassageStore):
            return self.passages.ids
        return [p.id for p in self.passages]

    def digest(self) -> str:
        """sha256 over (id, title, text) of every passage in order; cached after the first call (a store
        returns the digest it recorded while being written)."""
        if not hasattr(self, "_digest"):
            if isinstance(self.passages, PassageStore):
                self._digest = self.passages.digest()
            else:
                h = hashlib.sha256()
                for p in self.passages:
                    update_digest(h, p)
                self._digest = h.hexdigest()
        return self._digest


def update_digest(h, p: Passage) -> None:
    """Feed one passage into a running Corpus.digest() hash (the store computes it while writing)."""
    for part in (p.id, p.title, p.text):
        h.update(part.encode())
        h.update(b"\x00")


def load_corpus(spec: str, limit: int | None = None) -> Corpus:
    """A registered corpus name (harness.registry.CORPORA: minikilt, hub, ...), or a path to a {id, title, text}
    JSONL/Parquet file (read by the registered "corpus-file" loader)."""
    import os

    from imprag_bench.harness.registry import CORPORA, LOADERS

    if os.path.exists(spec):
        return LOADERS.get("corpus-file")(spec, limit)
    if spec not in CORPORA and ("/" in spec or spec.endswith((".jsonl", ".parquet"))):
        raise UserError(f"corpus file {spec} does not exist")
    return CORPORA.get(spec)(limit)
