"""The knowledge corpus: passages {id, title, text}, looked up by id, with a content hash.

The hash binds indexes to the exact corpus they were built from (see imprag_bench/harness/index.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage


@dataclass
class Corpus:
    """An ordered, id-addressable list of passages."""

    name: str
    passages: list[Passage]
    _by_id: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for i, p in enumerate(self.passages):
            if p.id in self._by_id:
                raise UserError(f"corpus {self.name}: duplicate passage id {p.id!r}")
            self._by_id[p.id] = i

    def __len__(self) -> int:
        return len(self.passages)

    def __getitem__(self, pid: str) -> Passage:
        return self.passages[self._by_id[pid]]

    def get_many(self, ids: Iterable[str]) -> list[Passage]:
        return [self[i] for i in ids]

    @property
    def texts(self) -> list[str]:
        return [p.as_text() for p in self.passages]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.passages]

    def digest(self) -> str:
        """sha256 over (id, title, text) of every passage in order; cached after the first call."""
        if not hasattr(self, "_digest"):
            h = hashlib.sha256()
            for p in self.passages:
                for part in (p.id, p.title, p.text):
                    h.update(part.encode())
                    h.update(b"\x00")
            self._digest = h.hexdigest()
        return self._digest
