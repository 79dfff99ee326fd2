"""Seconds per ImpRAG training step on this machine (1 torch thread), per stage and setting.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_training.py [--batch 8] [--n-read 2] [--n-hard 3] [--bf16]
       [--random-negatives 16] [--teacher-over own|all] [--threads 2]
Uses SmolLM2-135M, real mini-KILT train questions and random corpus passages as candidates (the cost does not
depend on which passages they are), a mix of 50% retrieval items, 40% instruction and 10% plain items.
"""
from __future__ import annotations

import argparse
import random
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n-read", type=int, default=2)
    ap.add_argument("--n-hard", type=int, default=3)
    ap.add_argument("--n-pos", type=int, default=5)
    ap.add_argument("--l-max", type=int, default=128)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--retrieval-share", type=float, default=0.5)
    ap.add_argument("--random-negatives", type=int, default=0)
    ap.add_argument("--teacher-over", choices=("own", "all"), default="own",
                    help="own: the LM scores each query's own candidates (CPU presets); all: every candidate of C")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.harness.registry import TASKS
    from imprag_bench.harness.training.candidates import Candidates
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig
    from imprag_bench.harness.training.mix import TrainItem, denoise_item
    from imprag_bench.tasks.corpora import load_corpus

    corpus = load_corpus("minikilt")
    exs = TASKS.get("nq").load("minikilt", "train")
    rng = random.Random(0)
    hf, tok = load_lm("smollm2-135m")
    model = ImpRAGModel(hf, tok, ImpRAGConfig(l_max=a.l_max))
    obj = ImpRAGObjective(model, lambda ids: [p.as_text() for p in corpus.get_many(ids)],
                          ObjectiveConfig(n_read=a.n_read, bf16=a.bf16, random_negatives=a.random_negatives,
                                          teacher_over=a.teacher_over, score_scale="1/sqrt(head_dim)"),
                          negative_pool=corpus.ids)
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-6)
    n_ret = round(a.batch * a.retrieval_share)
    for stage_step in (0, 100):
        times = []
        for s in range(a.steps):
            batch = []
            for i in range(n_ret):
                ex = exs[rng.randrange(len(exs))]
                ids = [p.id for p in rng.sample(corpus.passages, a.n_pos + a.n_hard)]
                batch.append(TrainItem(ex.id, "retrieval", ex.prompt, ex.target, Candidates(tuple(ids[:a.n_pos]), tuple(ids[a.n_pos:]))))
            while len(batch) < a.batch:
                p = rng.choice(corpus.passages)
                it = denoise_item(p.id, p.text, rng) if len(batch) % 5 else TrainItem("t", "plain", "", p.as_text())
                if it:
                    batch.append(it)
            t0 = time.perf_counter()
            out = obj.losses(batch, stage_step, 101)
            out["loss"].backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        stage = obj.stage(stage_step, 101)
        print(f"{stage:8} batch={a.batch} retrieval={n_ret} n_read={a.n_read} n_pos={a.n_pos} n_hard={a.n_hard} l_max={a.l_max} "
              f"bf16={a.bf16} random={a.random_negatives} teacher={a.teacher_over} threads={a.threads}: s/step {sum(times[1:]) / max(1, len(times) - 1):.2f} (all: {[round(t, 2) for t in times]})",
              flush=True)


if __name__ == "__main__":
    main()
