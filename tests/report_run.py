"""A hand-designed run folder for the HTML report tests: 3 systems x 2 tasks, known EM/recall patterns.

nq (6 examples): imprag (implicit query) and bm25 (query = prompt) with
  imprag EM  1 1 0 0 1 0   recall 1 1 0 1 1 0
  bm25   EM  1 0 1 0 0 0   recall 1 0 1 1 1 1
so on nq with A=imprag, B=bm25: disagree = ex 1, 2, 4; A right B wrong = 1, 4; B right A wrong = 2;
retrieval differs = 1, 2, 5. closed-book never retrieves. fever (60 examples, recall null) exercises paging.
Golds occur in passage text in another case ("PARIS-5" in "... paris-5 ..."), so highlighting must be
case-insensitive. Example nq-3 carries hostile text in its prompt, prediction and passage.
"""
from __future__ import annotations

import json
from pathlib import Path

from imprag_bench.harness import report

HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror="document.title=1">'
IMPRAG_EM = [1, 1, 0, 0, 1, 0]
IMPRAG_RC = [1, 1, 0, 1, 1, 0]
BM25_EM = [1, 0, 1, 0, 0, 0]
BM25_RC = [1, 0, 1, 1, 1, 1]
N_FEVER = 60


def passages() -> list[dict]:
    """Referenced passages n0..n5 (gold inside, lower case) plus u0..u2 that nobody retrieves."""
    out = [{"id": f"n{i}", "title": f"City {i}", "text": f"The answer here is paris-{i} as recorded in volume {i}."}
           for i in range(6)]
    out[3]["text"] = "Passage with " + HOSTILE + " and paris-3."
    out += [{"id": f"f{i}", "title": f"Fact {i}", "text": f"Fact number {i} is stated plainly."} for i in range(3)]
    out += [{"id": f"u{i}", "title": "Unused", "text": f"UNREFERENCED passage text {i}"} for i in range(3)]
    return out


def records() -> list[dict]:
    recs = []
    for i in range(6):
        prompt = f"Q: which city is number {i}? A:" + (HOSTILE if i == 3 else "")
        base = {"task": "nq", "group": "seen", "id": f"nq-{i}", "prompt": prompt, "golds": [f"PARIS-{i}", "Lutetia"]}
        for system, em, rc, query, retrieved in (
                ("imprag", IMPRAG_EM[i], IMPRAG_RC[i], None, [f"n{i}" if IMPRAG_RC[i] else f"n{(i + 1) % 6}"]),
                ("bm25", BM25_EM[i], BM25_RC[i], prompt, [f"n{i}" if BM25_RC[i] else f"n{(i + 2) % 6}"]),
                ("closed-book", 0, None, None, [])):
            pred = f"Paris-{i}" if em else ("wrong" + (HOSTILE if i == 3 else ""))
            recs.append({**base, "system": system, "query": query, "retrieved": retrieved, "prediction": pred,
                         "em": float(em), "f1": float(em), "recall": None if rc is None else float(rc)})
    for i in range(N_FEVER):
        base = {"task": "fever", "group": "unseen-format", "id": f"fever-{i}", "prompt": f"Claim {i}. True or False?",
                "golds": ["True"]}
        for system, query, retrieved in (("imprag", None, [f"f{i % 3}"]), ("bm25", base["prompt"], [f"f{(i + 1) % 3}"]),
                                         ("closed-book", None, [])):
            em = float((i + len(system)) % 2)
            recs.append({**base, "system": system, "query": query, "retrieved": retrieved,
                         "prediction": "True" if em else "False", "em": em, "f1": em, "recall": None})
    return recs


def write_run(out: Path, recs: list[dict] | None = None, corpus: str | None = None) -> Path:
    """Write config.json, preds/<system>/<task>.jsonl, leaderboard.csv and the corpus file into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    recs = records() if recs is None else recs
    corpus_path = out.parent / f"{out.name}-corpus.jsonl"
    corpus_path.write_text("".join(json.dumps(p) + "\n" for p in passages()))
    systems = sorted({r["system"] for r in recs})
    cfg = {"corpus": corpus or str(corpus_path), "corpus_limit": None, "k": 1, "n": None, "seed": 0,
           "model": "smollm2-135m", "preset": "quick", "split": "test", "source": "minikilt",
           "tasks": ["nq", "fever"], "systems": systems, "out": str(out)}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    for r in recs:
        path = out / "preds" / r["system"] / f"{r['task']}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(r) + "\n")
    report.write_csv(report.leaderboard(recs, n_boot=50), out / "leaderboard.csv")
    return out
