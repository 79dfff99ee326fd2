"""The records that flow through the harness: passages, examples, predictions.

Data flows one way: assets -> tasks (Example, Passage) -> systems (Prediction) -> runner -> metrics -> report.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of the knowledge corpus."""

    id: str
    title: str
    text: str

    def as_text(self) -> str:
        """The passage as the reader and the retrievers see it: title on its own line, then text."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class Example:
    """One evaluation or training instance of a task.

    prompt: the paper's template filled in, up to and including "A:" (or the instruction); this is what
    the LM reads and, for explicit-query systems under the `prompt` template, the retrieval query.
    target: the canonical answer text (training target). golds: every accepted answer (aliases).
    queries: explicit query texts by template name (`prompt` is always present; `oracle` where the task
    defines a hand-designed query).
    """

    id: str
    task: str
    prompt: str
    target: str
    golds: list[str]
    queries: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prediction:
    """What a system returns for one example.

    retrieved: ranked passage ids (empty for closed-book); query: the exact text sent to the retriever,
    or None when the system has no explicit query (closed-book, ImpRAG's implicit query).
    """

    id: str
    text: str
    retrieved: list[str] = field(default_factory=list)
    query: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
