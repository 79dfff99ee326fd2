"""The paper's eight tasks (Table 1 templates), each with an offline mini-KILT source and a hub source.

Adding a task is one `TaskSpec(...)` here (or in your own module) plus, where needed, a loader function.
"""
from __future__ import annotations

import importlib

from imprag_bench.harness.registry import TASKS
from imprag_bench.tasks.spec import TaskSpec

QA = "Q: {question} A:"
SLOT = ("{entity} [SEP] {relation} Provide the answer corresponding to the relation specified after [SEP] "
        "for the entity mentioned before [SEP] A:")
FEVER = "Is this statement true? {statement} A:"
AIDA = ("{context} Output the Wikipedia page title of the entity mentioned between [START] and [END] "
        "in the given text A:")


def minikilt(task: str):
    """Loader for a mini-KILT task (built on first use from the offline assets)."""
    def load(split, limit):
        return importlib.import_module("imprag_bench.tasks.minikilt").load_split(task, split)
    return load


def hub(fn: str):
    """Loader that calls `imprag_bench.tasks.hub.<fn>` (needs the Hugging Face hub or local fixtures)."""
    def load(split, limit):
        return getattr(importlib.import_module("imprag_bench.tasks.hub"), fn)(split, limit)
    return load


def _add(spec: TaskSpec) -> None:
    TASKS.add(spec.name, spec)


_add(TaskSpec("nq", "seen", QA, {"minikilt": minikilt("nq"), "hub": hub("nq_open")},
              queries={"oracle": "{question}"}, description="open-domain QA (NQ-open test)"))
_add(TaskSpec("hotpotqa", "seen", QA, {"minikilt": minikilt("hotpotqa"), "hub": hub("kilt_hotpotqa")},
              queries={"oracle": "{question}"}, description="multi-hop QA (KILT dev)"))
_add(TaskSpec("simpleqa", "unseen-qa", QA, {"minikilt": minikilt("simpleqa"), "hub": hub("simpleqa")},
              queries={"oracle": "{question}"}, description="short fact-seeking QA (SimpleQA test)"))
_add(TaskSpec("2wiki", "unseen-qa", QA, {"minikilt": minikilt("2wiki"), "hub": hub("twowiki")},
              queries={"oracle": "{question}"}, description="multi-hop QA (2WikiMultiHopQA dev)"))
_add(TaskSpec("trex", "unseen-format", SLOT, {"minikilt": minikilt("trex"), "hub": hub("kilt_trex")},
              queries={"oracle": "{entity} {relation}"}, description="slot filling (KILT T-REx dev)"))
_add(TaskSpec("zsre", "unseen-format", SLOT, {"minikilt": minikilt("zsre"), "hub": hub("kilt_zsre")},
              queries={"oracle": "{entity} {relation}"}, description="zero-shot relation extraction (KILT dev)"))
_add(TaskSpec("fever", "unseen-format", FEVER, {"minikilt": minikilt("fever"), "hub": hub("kilt_fever")},
              queries={"oracle": "{statement}"}, answer_map={"SUPPORTS": "True", "REFUTES": "False"},
              recall=False, description="fact verification, True/False (KILT dev)"))
_add(TaskSpec("aida", "unseen-format", AIDA, {"minikilt": minikilt("aida"), "hub": hub("kilt_aida")},
              queries={"oracle": "{mention}"}, description="entity linking to a page title (KILT dev)"))
