"""A copy of the hub fixtures with a corpus large enough for the paper recipe's pseudo-labels to have hard
negatives: wiki_dpr gets 240 more passages and NQ-open / KILT HotpotQA train 32 more questions each, all real text
from the offline mini-KILT asset (with 4 passages every retrieval loss is 0.0 and a test of it cannot fail)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"
N_PASSAGES, N_QUESTIONS = 240, 32


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def make_hub_large(dst: Path) -> Path:
    """The fixture tree under `dst`, extended as the module says; returns `dst`."""
    from imprag_bench.harness.registry import TASKS
    from imprag_bench.tasks.corpora import load_corpus

    shutil.copytree(FIXTURES, dst)
    wiki = dst / "facebook__wiki_dpr" / "psgs_w100" / "train.jsonl"
    start = len(wiki.read_text().splitlines()) + 1
    passages = load_corpus("minikilt", N_PASSAGES).passages
    _append(wiki, [{"id": str(start + i), "title": p.title, "text": p.text} for i, p in enumerate(passages)])
    nq = TASKS.get("nq").load("minikilt", "train")[:N_QUESTIONS]  # the hub's NQ is nq_open
    _append(dst / "google-research-datasets__nq_open" / "nq_open" / "train.jsonl",
            [{"question": ex.meta["question"], "answer": list(ex.golds)} for ex in nq])
    hotpot = TASKS.get("hotpotqa").load("minikilt", "train")[:N_QUESTIONS]  # KILT HotpotQA
    _append(dst / "facebook__kilt_tasks" / "hotpotqa" / "train.jsonl",
            [{"id": f"large-{ex.id}", "input": ex.meta.get("question") or ex.prompt,
              "output": [{"answer": g} for g in ex.golds]} for ex in hotpot])
    return dst
