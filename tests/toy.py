"""A toy task and a deterministic toy system, registered for runner and CLI tests (no models needed)."""
from __future__ import annotations

import os
import time

from imprag_bench.harness.records import Passage, Prediction
from imprag_bench.harness.registry import CORPORA, SYSTEMS, TASKS
from imprag_bench.harness.corpus import Corpus
from imprag_bench.tasks.spec import TaskSpec

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
            ("Chile", "Santiago"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Cuba", "Havana"), ("Iran", "Tehran"),
            ("Iraq", "Baghdad"), ("Mali", "Bamako")]


def _records(split, limit):
    rows = [{"id": f"toy-{i}", "question": f"What is the capital of {c}?", "answers": [a]}
            for i, (c, a) in enumerate(CAPITALS)]
    return rows if split == "test" else rows[:2]


if "toy" not in TASKS._items:
    TASKS.add("toy", TaskSpec("toy", "seen", "Q: {question} A:", {"minikilt": _records},
                              queries={"oracle": "{question}"}))
    CORPORA.add("toy", lambda limit=None: Corpus("toy", [Passage(f"p{i}", c, f"The capital of {c} is {a}.")
                                                        for i, (c, a) in enumerate(CAPITALS)]))


class EchoSystem:
    """Answers with the capital when its passage is retrieved by word overlap; sleeps to be killable."""

    def __init__(self, options):
        self.name = "echo"
        self.delay = float(os.environ.get("TOY_DELAY", "0"))

    def prepare(self, corpus, ctx):
        self.corpus = corpus

    def predict(self, examples):
        out = []
        for ex in examples:
            time.sleep(self.delay)
            country = ex.prompt.split("capital of ")[1].split("?")[0]
            hit = [p for p in self.corpus.passages if p.title == country and len(country) % 2 == 0]
            text = hit[0].text.split(" is ")[1].rstrip(".") if hit else "unknown"
            out.append(Prediction(ex.id, text, retrieved=[p.id for p in hit] or ["p0"], query=ex.queries["prompt"]))
        return out


if "echo" not in SYSTEMS._items:
    SYSTEMS.add("echo", EchoSystem)
