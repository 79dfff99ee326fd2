"""Build mini-KILT into a folder: corpus.jsonl, <task>/<split>.jsonl and stats.json.

Pure function of the pinned assets and this package's code: fixed seeds, sorted inputs, JSON written with
sorted keys, no timestamps, so two builds are byte-identical.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from imprag_bench.harness.assets import log
from imprag_bench.tasks.minikilt import corpus, facts, linking, multihop, sources, trivia
from imprag_bench.tasks.minikilt.splits import SPLITS, unique_ids

TASK_NAMES = ("nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida")
SEEDS = {t: 20250 + i for i, t in enumerate(TASK_NAMES)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


def _check_no_leakage(task: str, splits: dict[str, list[dict]]) -> None:
    """Fail the build if an id, a question/claim/context text or a slot entity is in two splits of a task."""
    for key in ("id", "question", "statement", "context", "entity"):
        seen: dict[str, str] = {}
        for split in SPLITS:
            for r in splits[split]:
                if key in r:
                    v = sources.normalize(r[key]) if key != "id" else r[key]
                    if seen.setdefault(v, split) != split:
                        raise AssertionError(f"{task}: {key} {r[key]!r} is in {seen[v]} and {split}")
    unique_ids([r for s in SPLITS for r in splits[s]])


def build_tasks(wiki: list[dict], countries, cities, passages: list[dict]) -> tuple[dict, dict]:
    """All eight tasks' splits from the loaded sources, and the trivia pools' stats."""
    index = trivia.AnswerIndex(passages)
    pools = {}
    out = {}
    for task in ("nq", "simpleqa"):
        out[task], pools[task] = trivia.build(task, index, SEEDS[task])
    out.update({
        "hotpotqa": multihop.build_hotpot(countries, cities, SEEDS["hotpotqa"]),
        "2wiki": multihop.build_2wiki(countries, cities, SEEDS["2wiki"]),
        "trex": facts.build_slots("trex", countries, cities, SEEDS["trex"]),
        "zsre": facts.build_slots("zsre", countries, cities, SEEDS["zsre"]),
        "fever": facts.build_fever(countries, cities, SEEDS["fever"]),
        "aida": linking.build(wiki, countries, SEEDS["aida"]),
    })
    return {t: out[t] for t in TASK_NAMES}, pools


def stats(passages: list[dict], tasks: dict[str, dict[str, list[dict]]], pools: dict) -> dict:
    """Sizes per task and split, corpus composition, and answer-in-corpus fractions for nq/simpleqa."""
    kinds: dict[str, int] = {}
    for p in passages:
        kinds[p["id"].split(":")[0]] = kinds.get(p["id"].split(":")[0], 0) + 1
    out = {"corpus": {"passages": len(passages), "by_kind": kinds}, "tasks": {}, "trivia_pools": pools}
    for task, splits in tasks.items():
        entry = {s: len(splits[s]) for s in SPLITS}
        if task in ("nq", "simpleqa"):
            for s in SPLITS:
                n = len(splits[s])
                entry[f"{s}_answer_in_corpus"] = round(sum(r["answer_in_corpus"] for r in splits[s]) / max(n, 1), 4)
        out["tasks"][task] = entry
    return out


def build(out: Path) -> None:
    """Write mini-KILT into `out` (called by imprag_bench.harness.assets.derived with a temporary folder)."""
    t0 = time.time()
    log("mini-KILT: reading Wikipedia leads, trivia lists, country and city facts")
    wiki = sources.load_wiki()
    countries = sources.load_countries({w["title"] for w in wiki})
    cities = sources.load_cities(countries)
    passages = corpus.build_corpus(wiki, countries, cities)
    unique_ids(passages)
    log(f"mini-KILT: corpus of {len(passages):,} passages; building the eight tasks")
    tasks, pools = build_tasks(wiki, countries, cities, passages)
    _write_jsonl(out / "corpus.jsonl", passages)
    for task, splits in tasks.items():
        _check_no_leakage(task, splits)
        for split in SPLITS:
            _write_jsonl(out / task / f"{split}.jsonl", splits[split])
        log(f"mini-KILT: {task}: " + ", ".join(f"{s} {len(splits[s])}" for s in SPLITS))
    (out / "stats.json").write_text(json.dumps(stats(passages, tasks, pools), indent=1, sort_keys=True) + "\n",
                                    encoding="utf-8")
    log(f"mini-KILT: built in {time.time() - t0:.1f} s")
