"""Cost of each system: parameters (reader + separate retriever), index size, per-example latency.

    python benchmarks/system_costs.py --systems closed-book bm25 dense imprag \
        ra-it:checkpoint=runs/train/ra-it-quick/reader/checkpoint \
        ra-dit-llama:checkpoint=runs/train/ra-dit-llama-quick/reader/checkpoint --out results/system_costs.csv

Parameters: the reader LM's, plus the retriever's when it is a separate model (dense encoder: all its
weights; RA-DIT-Llama's LM-slice copy: embeddings + layers 0..b, i.e. the weights it runs). ImpRAG's
retriever is its own bottom layers, so it adds none; BM25 has no parameters. Index size: the FAISS index as
`faiss.write_index` stores it (bytes), or the saved bm25s index. Latency: wall seconds of `predict` per
example (retrieval + reading, batch of `--batch-size`) on the first `--n` test examples of each task after
`prepare` (index built or loaded from the cache, not timed); run with OMP_NUM_THREADS=1 for the 1-thread
numbers.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_SYSTEMS = ["closed-book", "bm25", "dense", "imprag"]


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def slice_params(hf) -> int:
    """Embeddings + decoder layers of an LM-slice copy (its unused final norm / lm_head not counted)."""
    return n_params(hf.model.embed_tokens) + n_params(hf.model.layers)


def lm_params(hf) -> int:
    """Unique parameters of a causal LM (tied embeddings counted once)."""
    seen, total = set(), 0
    for p in hf.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total


def index_bytes(retriever) -> int:
    """Size on disk of a system's passage index."""
    if retriever is None:
        return 0
    index = getattr(retriever, "index", None)
    if index is not None and hasattr(index, "index"):
        import faiss
        return int(faiss.serialize_index(index.index).nbytes)
    if hasattr(retriever, "bm25"):
        with tempfile.TemporaryDirectory() as d:
            retriever.bm25.save(d)
            return sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file())
    return 0


def costs(system, name: str) -> tuple[int, int, int]:
    """(reader params, separate-retriever params, index bytes) of a prepared system."""
    if hasattr(system, "model") and hasattr(system.model, "lm"):  # ImpRAG: one LM retrieves and reads
        return lm_params(system.model.lm), 0, index_bytes(system)
    reader = lm_params(system.reader.model)
    ret = getattr(system, "retriever", None)
    rp = 0
    if ret is not None:
        enc = getattr(ret, "encoder", None)
        if enc is not None and hasattr(enc, "hf"):
            rp = slice_params(enc.hf)
        elif enc is not None and hasattr(enc, "model"):
            rp = n_params(enc.model)
    return reader, rp, index_bytes(ret)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, help="system specs (name:key=value,...)")
    ap.add_argument("--tasks", nargs="+", default=["nq", "hotpotqa", "trex", "aida"])
    ap.add_argument("--n", type=int, default=4, help="examples per task timed")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--fewshot", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=8, dest="batch_size")
    ap.add_argument("--max-new-tokens", type=int, default=12, dest="max_new_tokens")
    ap.add_argument("--out", default="results/system_costs.csv")
    ap.add_argument("--append", action="store_true", help="add rows to an existing CSV instead of replacing it")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from imprag_bench.harness.assets import cache_root
    from imprag_bench.harness.config import SystemSpec
    from imprag_bench.harness.registry import SYSTEMS, TASKS
    from imprag_bench.harness.runner import load_demos
    from imprag_bench.harness.system import RunContext
    from imprag_bench.tasks.corpora import load_corpus

    corpus = load_corpus("minikilt")
    examples, demos = [], {}
    for t in args.tasks:
        spec = TASKS.get(t)
        examples += spec.load("minikilt", "test")[: args.n]
        demos[t] = load_demos(spec, "minikilt", {"fewshot": args.fewshot})
    rows = []
    for text in args.systems:
        s = SystemSpec.parse(text)
        options = {"model": args.model, "k": args.k, "batch_size": args.batch_size,
                   "max_new_tokens": args.max_new_tokens, **s.options}
        system = SYSTEMS.get(s.name)(options)
        system.prepare(None if s.name == "closed-book" else corpus,
                       RunContext(options=options, cache_dir=cache_root(), demos=demos))
        system.predict(examples[:1])  # warm-up (lazy init, first-call overheads)
        t0 = time.perf_counter()
        for tname in args.tasks:
            system.predict([ex for ex in examples if ex.task == tname])
        lat = (time.perf_counter() - t0) / max(1, len(examples))
        reader, ret, idx = costs(system, s.name)
        rows.append({"system": s.label, "params_reader": reader, "params_retriever": ret,
                     "params_total": reader + ret, "index_bytes": idx, "latency_s_per_example": round(lat, 4),
                     "n_examples": len(examples), "k": options["k"], "threads": torch.get_num_threads()})
        print(f"{s.label}: {rows[-1]}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and out.exists():
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f)) + rows
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[-1]))
        w.writeheader()
        w.writerows(rows)
    print(f"{'system':60} {'params (M)':>11} {'retriever (M)':>13} {'index (MB)':>10} {'s/example':>9}")
    for r in rows:
        print(f"{r['system'][:60]:60} {int(r['params_total']) / 1e6:11.1f} {int(r['params_retriever']) / 1e6:13.1f} "
              f"{int(r['index_bytes']) / 1e6:10.1f} {float(r['latency_s_per_example']):9.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
