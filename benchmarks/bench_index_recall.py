"""Recall, size and speed of compressed FAISS indexes against Flat: which factory should a large corpus use?

The paper presets search 21M passages with `IVF65536_HNSW32,PQ64`; Flat would need 21M x 4d bytes. This
measures, on real vectors, what compression costs in retrieval: the mini-KILT corpus (~13.5k passages) is
encoded once with MiniLM (384-d, the offline dense baseline's encoder) through `build_index`, which stores
the vectors so every factory trains from the same shards without re-encoding. Queries are the test split
of nq, hotpotqa, trex and aida (a seeded --queries/4 of each), as the dense baseline forms them
(`ex.queries["prompt"]`, the whole prompt). For each factory (IVF ones at each --nprobe) it reports:

- recall@10 vs Flat: mean over queries of |top-10 ∩ Flat's top-10| / 10;
- answer recall@10: the harness's answer-in-passage recall (metrics.recall_at_k) of its top 10;
- bytes: faiss.serialize_index size, per passage, split into a fixed part (the trained, empty index:
  centroids, codebooks) and the marginal bytes each passage adds; "GB @21M" = marginal x 21M (the fixed
  part at the paper's nlist=65536 is another ~0.1-0.2 GB of centroids, not included);
- build seconds (train + add, encoding excluded) and search ms/query (one batch of all queries). For
  8-bit PQ, index_factory turns on polysemous training (a code permutation, ~2.5 s per sub-quantizer
  here, whatever n); it does not change ADC search, so a "PQ{m}np" factory has the same recall, built faster.

IVF lists are scaled to the corpus: nlist = 4 sqrt(n) rounded to a power of two (512 here); PQ codes are
8-bit (m bytes/passage). HNSW search (HNSW32,Flat and the IVF_HNSW coarse quantizer) uses efSearch=--ef.
Each run rebuilds every index from the stored vectors (a reused --work folder logs the removed index
file as "damaged ... rebuilding"), so build times are always measured.

    OMP_NUM_THREADS=2 python benchmarks/bench_index_recall.py --json results/bench_index_recall.json
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

K = 10
TASKS = ("nq", "hotpotqa", "trex", "aida")


def default_factories(n: int, dim: int) -> list[str]:
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    ms = [m for m in (32, 48, 64) if dim % m == 0]
    return (["Flat", "HNSW32,Flat"] + [f"IVF{nlist},PQ{m}" for m in ms]
            + [f"IVF{nlist}_HNSW32,PQ{m}" for m in ms])


def index_bytes(index) -> tuple[int, int]:
    """(serialized bytes, bytes of the same index trained but empty)."""
    import faiss

    blob = faiss.serialize_index(index)
    empty = faiss.deserialize_index(blob)
    empty.reset()
    return int(blob.nbytes), int(faiss.serialize_index(empty).nbytes)


def measure(work, ids, encode, binding, queries, factories, nprobes=(16, 32), ef=64, answer_hit=None,
            k=K, n_train=500_000) -> tuple[list[dict], float]:
    """(one row per (factory, nprobe), seconds spent encoding): recall@k vs the first factory's (Flat's)
    top-k, answer recall@k (`answer_hit(query_no, ids) -> 0/1`, if given), bytes, build s, search ms/query."""
    import faiss

    from imprag_bench.harness.index import build_index, index_file

    spent = [0.0]

    def timed_encode(s, e):
        t = time.perf_counter()
        out = encode(s, e)
        spent[0] += time.perf_counter() - t
        return out

    rows, ref = [], None
    for factory in factories:
        (Path(work) / index_file(factory)).unlink(missing_ok=True)  # measure the build, never a cached load
        t0, e0 = time.perf_counter(), spent[0]
        vi = build_index(work, ids, timed_encode, binding, factory=factory, desc="bench", n_train=n_train)
        build_s = time.perf_counter() - t0 - (spent[0] - e0)
        total, fixed = index_bytes(vi.index)
        ivf = faiss.try_extract_index_ivf(vi.index)
        ps = faiss.ParameterSpace()
        settings = [{"nprobe": p} for p in nprobes] if ivf is not None else [{}]
        for s in settings:
            if ivf is not None:
                ps.set_index_parameter(vi.index, "nprobe", s["nprobe"])
                if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
                    ps.set_index_parameter(vi.index, "quantizer_efSearch", max(ef, s["nprobe"]))
            elif isinstance(faiss.downcast_index(vi.index), faiss.IndexHNSW):
                ps.set_index_parameter(vi.index, "efSearch", ef)
            t = time.perf_counter()
            _, got = vi.search(queries, k)
            search_ms = (time.perf_counter() - t) * 1000 / len(queries)
            ref = got if ref is None else ref
            row = {"factory": factory, "nprobe": s.get("nprobe"),
                   "ef": ef if "HNSW" in factory else None,
                   "recall_vs_flat": round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, ref)])), 4),
                   "answer_recall": (round(float(np.mean([answer_hit(i, g) for i, g in enumerate(got)])), 4)
                                     if answer_hit else None),
                   "bytes": total, "fixed_bytes": fixed, "bytes_per_passage": round(total / len(ids), 1),
                   "marginal_bytes_per_passage": round((total - fixed) / len(ids), 1),
                   "gb_at_21m": round((total - fixed) / len(ids) * 21e6 / 1e9, 2),
                   "build_s": round(build_s, 2), "search_ms_per_query": round(search_ms, 3)}
            rows.append(row)
            print(f"[bench] {factory} {s}: recall {row['recall_vs_flat']}", file=sys.stderr)
    return rows, spent[0]


def load_queries(n_total: int):
    from imprag_bench.harness.registry import TASKS as REG
    from imprag_bench.harness.runner import select

    per = max(1, n_total // len(TASKS))
    return [ex for t in TASKS for ex in select(REG.get(t).load("minikilt", "test"), per, 0, t)]


def table(rows: list[dict]) -> str:
    cols = [("factory", "factory"), ("nprobe", "nprobe"), ("recall_vs_flat", "recall@10 vs Flat"),
            ("answer_recall", "answer recall@10"), ("bytes", "bytes"), ("bytes_per_passage", "B/passage"),
            ("marginal_bytes_per_passage", "marginal B/passage"), ("gb_at_21m", "GB @21M"),
            ("build_s", "build s"), ("search_ms_per_query", "search ms/query")]
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("-" if r[c] is None else f"{r[c]:,}" if c == "bytes" else str(r[c])
                                     for c, _ in cols) + " |")
    return "\n".join(out)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and FAISS (OpenMP) threads")
    ap.add_argument("--queries", type=int, default=500, help="queries in all, split evenly over the 4 tasks")
    ap.add_argument("--work", help="folder for the stored vectors and indexes (default: a temporary one)")
    ap.add_argument("--factories", nargs="+", help="default: Flat, HNSW32,Flat, IVF{nlist}[_HNSW32],PQ{32,48,64}")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--ef", type=int, default=64, help="HNSW efSearch (of the IVF quantizer: max(ef, nprobe))")
    ap.add_argument("--json", help="also write the rows and the setup here")
    args = ap.parse_args(argv)

    import faiss
    import torch

    from imprag_bench.harness import metrics
    from imprag_bench.harness.dense import DenseEncoder
    from imprag_bench.tasks.corpora import load_corpus

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    corpus = load_corpus("minikilt")
    examples = load_queries(args.queries)
    enc = DenseEncoder("minilm")
    binding = {"kind": "dense-mean-pool", "encoder": enc.name, "weights": enc.weights_digest,
               "max_length": enc.max_length, "bf16": enc.bf16, "corpus": corpus.digest()}  # as DenseRetriever's
    texts, ids = corpus.texts, corpus.ids
    t = time.perf_counter()
    qv = enc.encode([ex.queries["prompt"] for ex in examples])
    query_s = time.perf_counter() - t
    dim = qv.shape[1]
    factories = args.factories or default_factories(len(ids), dim)
    if factories[0] != "Flat":
        factories = ["Flat"] + factories

    def answer_hit(i, got):
        ex = examples[i]
        return metrics.recall_at_k(ex.golds, [corpus[p].as_text() for p in got], K)

    with tempfile.TemporaryDirectory() as tmp:
        rows, encode_s = measure(args.work or tmp, ids, lambda s, e: enc.encode(texts[s:e]), binding, qv,
                                 factories, args.nprobe, args.ef, answer_hit)
    print(table(rows))
    setup = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__, "faiss": faiss.__version__,
             "python": platform.python_version(), "encoder": "minilm (all-MiniLM-L6-v2)", "bf16": enc.bf16,
             "n_passages": len(ids), "dim": dim, "n_queries": len(examples), "tasks": list(TASKS), "split": "test",
             "query_text": "prompt", "k": K, "n_train": min(len(ids), 500_000), "ef": args.ef,
             "corpus_encode_s": round(encode_s, 1), "query_encode_s": round(query_s, 2),
             "gb_at_21m": "marginal bytes per passage x 21e6 (fixed centroids/codebooks excluded)"}
    print(f"{setup['cpu']}, {args.threads} threads, faiss {faiss.__version__}, torch {torch.__version__}; "
          f"{len(ids)} passages x {dim}-d, {len(examples)} queries; corpus encoded in {setup['corpus_encode_s']} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"setup": setup, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
