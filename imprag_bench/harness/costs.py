"""What each system costs, measured on equal footing: parameters (the reader plus a separate retriever), index
size, examples per second and per-example latency at the same k, passage budget, batch, max_new_tokens, dtype
and threads (those of the run config and its system entries).

A system reports its sizes through an optional `costs()` method: {"params_reader", "params_retriever",
"index_bytes"} and, where it times its own stages, "stage_seconds" (ImpRAG: bottom pass, search, passage
encoding, reading, decoding), so the table can say where a system's time goes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from imprag_bench.harness.io import atomic_write_text


def unique_params(module) -> int:
    """Parameters of a module, shared (tied) tensors counted once; 0 for None."""
    if module is None:
        return 0
    seen, total = set(), 0
    for p in module.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total


def faiss_bytes(vector_index) -> int:
    """Bytes of a harness.index.VectorIndex as FAISS serialises it (0 for None)."""
    if vector_index is None:
        return 0
    import faiss

    return int(faiss.serialize_index(vector_index.index).nbytes)


def measure_costs(cfg: dict, entries: list[dict], path: str | Path, n: int = 4, tasks: list[str] | None = None,
                  threads: int = 1, reference: str | None = None) -> pd.DataFrame:
    """Time every system's `predict` on the first `n` test examples of each of `tasks` (after a warm-up example,
    with `threads` torch threads; index building is not timed) and write one row per system to `path`. With a
    `reference` label, `latency_ratio` is each system's latency over the reference's (ImpRAG's one pass against
    a separate retriever and reader)."""
    from imprag_bench.harness.assets import cache_root
    from imprag_bench.harness.config import SystemSpec
    from imprag_bench.harness.prompting import load_demos
    from imprag_bench.harness.registry import SYSTEMS, TASKS
    from imprag_bench.harness.system import RunContext
    from imprag_bench.harness.corpus import load_corpus

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    tasks = [t for t in (tasks or cfg["tasks"]) if t in cfg["tasks"]]
    corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    examples, demos = [], {}
    for t in tasks:
        spec = TASKS.get(t)
        examples += spec.load(cfg["source"], cfg["split"])[:n]
        demos[t] = load_demos(spec, cfg["source"], cfg)
    base = {k: cfg[k] for k in ("model", "k", "batch_size", "max_new_tokens", "seed", "device", "dtype") if k in cfg}
    rows = []
    try:
        for entry in entries:
            sspec = SystemSpec.from_config(entry)
            options = {**base, **sspec.options}
            system = SYSTEMS.get(sspec.name)(options)
            system.prepare(None if sspec.name == "closed-book" else corpus,
                           RunContext(options=options, cache_dir=Path(cfg.get("cache_dir") or cache_root()),
                                      demos=demos, seed=cfg["seed"]))
            system.predict(examples[:1])  # warm-up: lazy initialisation, first-call overheads
            sizes = system.costs() if hasattr(system, "costs") else {}
            stage0 = dict(sizes.get("stage_seconds", {}))
            t0 = time.perf_counter()
            for t in tasks:
                system.predict([ex for ex in examples if ex.task == t])
            seconds = time.perf_counter() - t0
            sizes = system.costs() if hasattr(system, "costs") else {}
            stages = {k: (v - stage0.get(k, 0.0)) / max(1, len(examples))
                      for k, v in sizes.get("stage_seconds", {}).items()}
            rows.append({"system": sspec.label, "params_reader": sizes.get("params_reader", 0),
                         "params_retriever": sizes.get("params_retriever", 0),
                         "params_total": sizes.get("params_reader", 0) + sizes.get("params_retriever", 0),
                         "index_bytes": sizes.get("index_bytes", 0), "n_examples": len(examples),
                         "examples_per_s": round(len(examples) / seconds, 3),
                         "latency_s_per_example": round(seconds / max(1, len(examples)), 4),
                         "stage_s_per_example": json.dumps({k: round(v, 4) for k, v in stages.items()}),
                         "k": options.get("k"), "passage_tokens": options.get("passage_tokens"),
                         "dtype": options.get("dtype"), "batch_size": options.get("batch_size"),
                         "max_new_tokens": options.get("max_new_tokens"), "threads": threads})
    finally:
        torch.set_num_threads(before)
    df = pd.DataFrame(rows)
    if reference is not None and reference in set(df["system"]):
        ref = float(df.loc[df["system"] == reference, "latency_s_per_example"].iloc[0])
        df.insert(df.columns.get_loc("latency_s_per_example") + 1, "latency_ratio",
                  (df["latency_s_per_example"] / ref).round(3))
    from imprag_bench.harness import dist

    if dist.rank_world()[0] == 0:  # under torchrun every rank measures, rank 0 writes
        atomic_write_text(Path(path), df.to_csv(index=False))
    return df
