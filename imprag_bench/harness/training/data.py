"""Train-time data every trained system shares: the seen tasks' examples, their cached pseudo-labels, the
training mix and the demonstrations on retrieval prompts.

One builder (`training_items`) serves ImpRAG and the trained explicit-query baselines, so that at one preset
they train on exactly the same items in the same order. The unseen tasks are refused.
"""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path


from imprag_bench.harness.errors import UserError
from imprag_bench.harness.assets import log
from imprag_bench.harness.io import read_verified, write_verified
from imprag_bench.harness.training.candidates import Candidates, pseudo_label, pseudo_label_answers
from imprag_bench.harness.training.loop import world
from imprag_bench.harness.training.mix import SEEN_TASKS, TrainItem, build_mix


def target_text(target: str) -> str:
    """The generated continuation a reader is trained on: a space, the answer, the newline that ends decoding."""
    return f" {target.strip()}\n"


def load_examples(cfg) -> list:
    """The seen tasks' train splits (seeded subset of `max_examples` per task if set)."""
    from imprag_bench.harness.registry import TASKS

    bad = [t for t in cfg["tasks"] if t not in SEEN_TASKS]
    if bad:
        raise UserError(f"training uses the seen tasks only ({', '.join(SEEN_TASKS)}), not {', '.join(bad)}")
    out = []
    for t in cfg["tasks"]:
        exs = TASKS.get(t).load(cfg["source"], "train")
        if cfg.get("max_examples") and len(exs) > cfg["max_examples"]:
            keep = sorted(random.Random(f"{cfg['seed']}:{t}").sample(range(len(exs)), cfg["max_examples"]))
            exs = [exs[i] for i in keep]
        out += exs
    return out


def candidates_file(cfg, out: Path) -> Path:
    """Where the pseudo-labels of these settings are cached inside a training folder."""
    key = (f"{cfg['retriever'].replace('/', '_')}-p{cfg['n_pos']}-h{cfg['n_hard']}"
           f"{'-answer' if cfg['answer_positives'] else ''}-s{cfg['seed']}")
    return out / f"candidates-{key}.jsonl"


def cached_candidates(examples: list, corpus, cfg, path: Path, cache_dir: Path | None = None) -> list[Candidates]:
    """Pseudo-labels from the shared dense retriever, computed once and cached as JSONL by example id. Under
    torchrun every rank builds the index with the others (harness.index.build_index is collective, each rank
    on its own device), rank 0 labels and writes, and the others wait for the file."""
    from imprag_bench.harness import dist as dist_env

    rank, size = world()
    text = read_verified(path)
    if text is not None:
        try:
            rows = {r["id"]: r for r in map(json.loads, text.splitlines())}
        except (ValueError, KeyError, TypeError):
            text = None
    if text is None and path.exists():
        log(f"{path}: damaged candidates file (not its recorded digest, or unreadable); labelling again")
    fresh = text is None
    if dist_env.any_rank(fresh):  # one decision for all ranks, before any collective
        from imprag_bench.harness.assets import cache_root
        from imprag_bench.harness.dense import DenseRetriever

        retriever = DenseRetriever(corpus, cache_dir or cache_root(), encoder=cfg["retriever"],
                                   device=dist_env.rank_device(cfg.get("device") or "cpu"))
    if rank == 0 and fresh:
        queries = [ex.queries.get("prompt", ex.prompt) for ex in examples]
        if cfg["answer_positives"]:
            cands = pseudo_label_answers(queries, [ex.golds for ex in examples], retriever.search,
                                         lambda ids: [p.as_text() for p in corpus.get_many(ids)],
                                         seed=cfg["seed"], n_pos=cfg["n_pos"], n_hard=cfg["n_hard"])
        else:
            cands = pseudo_label(queries, retriever.search, seed=cfg["seed"], n_pos=cfg["n_pos"], n_hard=cfg["n_hard"])
        write_verified(path, "".join(json.dumps({"id": ex.id, "positives": c.positives,
                                                 "hard_negatives": c.hard_negatives}) + "\n"
                                     for ex, c in zip(examples, cands)))
    dist_env.barrier()  # the gloo coordination group, with the long timeout: labelling can take a while
    if fresh:  # written just now (by rank 0)
        rows = {r["id"]: r for r in map(json.loads, read_verified(path).splitlines())}
    if any(ex.id not in rows for ex in examples):
        raise UserError(f"{path}: cached candidates do not cover these examples; use another --out")
    return [Candidates(tuple(rows[ex.id]["positives"]), tuple(rows[ex.id]["hard_negatives"])) for ex in examples]


def with_demonstrations(items: list, examples: list, source: str, fewshot: int) -> list:
    """Retrieval items' prompts as the runner builds them with `--fewshot N`: the task's first N train examples
    as demonstrations, then the prompt, so that a query embedding is trained on the input it is evaluated on.
    The demonstrations themselves keep their bare prompt."""
    if fewshot <= 0:
        return items
    from imprag_bench.harness.prompting import lm_input, load_demos
    from imprag_bench.harness.registry import TASKS

    demos = {t: load_demos(TASKS.get(t), source, {"fewshot": fewshot}) for t in {ex.task for ex in examples}}
    demo_ids = {d.id for ds in demos.values() for d in ds}
    full = {f"ret:{ex.id}": lm_input(ex, demos[ex.task]) for ex in examples if ex.id not in demo_ids}
    return [replace(it, prompt=full[it.id]) if it.kind == "retrieval" and it.id in full else it for it in items]


def instruct_items(names: list[str], limit: int, seed: int) -> list[TrainItem]:
    """The hub instruction-tuning sets (tasks.instruct: oasst1, CoQA, ...; `limit` each) as J_gen-only items."""
    from imprag_bench.harness.registry import LOADERS

    load_instruct = LOADERS.get("instruct-set")
    return [TrainItem(f"it:{r['id']}", "instruct", r["prompt"], r["target"], meta={"source": r["source"]})
            for name in names for r in load_instruct(name, limit=limit, seed=seed)]


def training_items(cfg, corpus, out: Path) -> tuple[list, list]:
    """(examples, training mix) of the shared settings `cfg`: pseudo-labels (cached in `out`), the mix, the hub
    instruction sets where configured, and the evaluation's demonstrations on the retrieval prompts."""
    examples = load_examples(cfg)
    cands = cached_candidates(examples, corpus, cfg, candidates_file(cfg, out), cfg.get("cache_dir") and
                              Path(cfg["cache_dir"]))
    extra = instruct_items(cfg["instruct_sets"], cfg.get("max_examples") or 5000, cfg["seed"])
    items = build_mix(examples, cands, corpus, seed=cfg["seed"], n_instruct=int(cfg["instruct_share"] * len(examples)),
                      plain_share=cfg["plain_share"], extra=extra, synthetic_each=cfg.get("synthetic_each"))
    return examples, with_demonstrations(items, examples, cfg["source"], int(cfg.get("train_fewshot") or 0))
