"""The interface every method implements, explicit-query baselines and ImpRAG alike.

The runner never knows which system it is running: it builds a RunContext, calls `prepare` once with the
corpus, then `predict` on batches of examples. Systems register a factory in `imprag_bench.harness.registry.SYSTEMS`:
`factory(options: dict) -> System`, where options come from the preset / CLI (`model`, `k`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.records import Example, Prediction


@dataclass
class RunContext:
    """What a system may know about the run: its options, shared caches, few-shot demonstrations."""

    options: dict
    cache_dir: Path
    demos: dict[str, list[Example]] = field(default_factory=dict)  # task name -> demonstrations
    seed: int = 0

    def opt(self, key: str, default=None):
        return self.options.get(key, default)


class System(Protocol):
    """A method under evaluation."""

    name: str

    def prepare(self, corpus: Corpus | None, ctx: RunContext) -> None:
        """Load models and build or load indexes over `corpus` (None for closed-book runs)."""

    def predict(self, examples: list[Example]) -> list[Prediction]:
        """Answer a batch of examples; retrieving systems also return ranked passage ids and their query."""
