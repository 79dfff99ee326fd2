"""fp32 vs bf16 throughput on this machine, side by side, and the dtype the harness picks (`bf16=auto`).

bf16 autocast only pays where the CPU (or GPU) computes bf16 natively (imprag_bench.harness.hardware); on an
AVX-512 CPU without AVX512-BF16/AMX it is emulated and slower than fp32. This prints, for each dtype:
  matmul      2048 x 2048 @ 2048 x 2048 GFLOP/s (bf16 tensors vs fp32 tensors)
  minilm      MiniLM (the dense baseline's encoder, DenseEncoder) passages/s on a seeded sample of mini-KILT
  lm-slice    SmolLM2-135M bottom-layer passage embedding (ImpRAG's index encoder, layers 0..b) passages/s
              (both in length-sorted batches of 8, so padding is close to an index build's: SAMPLE_BATCH)
  train-step  SmolLM2-135M forward + backward of a small LM-loss batch (bf16 = autocast over fp32 weights), s
  reader      SmolLM2-135M greedy decoding of 8 mini-KILT prompts with 3 passages, weights in fp32 vs bf16 (the
              Reader and ImpRAG load them in the dtype `--dtype auto` picks), s/example
Each row alternates the dtypes for --rounds rounds and keeps the best (a shared machine's noise hits rounds,
not a dtype); and, with --quick-estimate, where the quick preset's time goes: the MiniLM index of the whole corpus
(estimated from the measured passages/s in the dtype `auto` picks, not timed) and the reader's greedy decoding
(the reader row in the picked dtype, scaled to the quick preset's 3 systems x 8 tasks x 12 examples).

    OMP_NUM_THREADS=1 python benchmarks/bench_dtype.py --threads 1 --rounds 3 --quick-estimate [--json out.json]

On a machine shared with other jobs (load above the core count) use --threads 1: two threads on two busy
cores measured 3-5x slower than one (each parallel region waits for the slower core), and varied 2x run to run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imprag_bench.harness.hardware import machine_facts, pick_dtype  # noqa: E402

DTYPES = (("fp32", torch.float32), ("bf16", torch.bfloat16))
# Both encoders sort their input by length and pad each batch to its longest passage. An index build does
# that over 8,192-passage shards (batches of 64 / 32), so its padding is small (MiniLM: 85 padded tokens per
# passage vs 84.6 real, mini-KILT). One batch of a small random sample would pad to its longest (206 tokens
# for 64 passages) and understate passages/s ~2x; length-sorted batches of 8 within the sample come close
# to the index build's padding.
SAMPLE_BATCH = 8


def note(msg: str) -> None:
    """Progress on stderr, so a slow machine shows where the time goes."""
    print(f"[bench_dtype] {msg}", file=sys.stderr, flush=True)


def timed(fn, repeats: int = 1, warm=None) -> float:
    """Seconds per call of `fn` after one warm-up call (of `warm` if given: something smaller that still
    loads the kernels)."""
    (warm or fn)()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def best_of(calls: dict, rounds: int, what: str) -> dict:
    """Best (shortest) seconds per dtype over `rounds` rounds that alternate the dtypes, after one warm-up
    each: on a shared machine a burst of others' work then hits one round, not one dtype."""
    for warm, _ in calls.values():
        warm()
    best = dict.fromkeys(calls, math.inf)
    for _ in range(rounds):
        for name, (_, fn) in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    note(f"{what}: " + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
    return best


def matmul_gflops(dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9


def sample_passages(n: int, seed: int = 0) -> tuple[list[str], int]:
    """n passages drawn (seeded) from the mini-KILT corpus, as the indexes embed them; and the corpus size."""
    from imprag_bench.tasks.minikilt import load_corpus

    corpus = load_corpus()
    idx = np.sort(np.random.default_rng(seed).choice(len(corpus), size=min(n, len(corpus)), replace=False))
    return [corpus[i].as_text() for i in idx], len(corpus)


def bench_minilm(texts: list[str], rounds: int) -> dict:
    from imprag_bench.harness.dense import DenseEncoder

    calls = {}
    for name, _ in DTYPES:
        enc = DenseEncoder("minilm", bf16=(name == "bf16"))
        enc.batch_size = SAMPLE_BATCH
        calls[name] = (lambda e=enc: e.encode(texts[:4]), lambda e=enc: e.encode(texts))
    return {k: len(texts) / v for k, v in best_of(calls, rounds, "minilm").items()}


def bench_lm_slice(im, texts: list[str], rounds: int) -> dict:
    calls = {name: (lambda b=(name == "bf16"): im.embed_passages(texts[:4], SAMPLE_BATCH, bf16=b),
                    lambda b=(name == "bf16"): im.embed_passages(texts, SAMPLE_BATCH, bf16=b)) for name, _ in DTYPES}
    return {k: len(texts) / v for k, v in best_of(calls, rounds, "lm-slice").items()}


def bench_train_step(model, tok, texts: list[str], batch: int, tokens: int, rounds: int) -> dict:
    def batch_of(n_tokens):
        return tok(texts[:batch], return_tensors="pt", padding="max_length", truncation=True, max_length=n_tokens,
                   add_special_tokens=False)

    def step(enc, bf16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**enc, labels=enc["input_ids"]).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    full, tiny = batch_of(tokens), batch_of(8)
    model.train()
    calls = {name: (lambda b=(name == "bf16"): step(tiny, b), lambda b=(name == "bf16"): step(full, b))
             for name, _ in DTYPES}
    out = best_of(calls, rounds, "train step")
    model.eval()
    return out


def bench_reader(model, tok, n_examples: int = 8, k: int = 3, passage_tokens: int = 128,
                 max_new_tokens: int = 12) -> tuple[float, int]:
    """Seconds per example of greedy decoding, batch 8, on mini-KILT NQ prompts with 2 demos and k passages."""
    from imprag_bench.baselines.reader import clip_passages
    from imprag_bench.harness.lm import generate
    from imprag_bench.harness.prompting import lm_input
    from imprag_bench.harness.registry import TASKS, load_builtins
    from imprag_bench.tasks.minikilt import load_corpus

    load_builtins()
    exs = TASKS.get("nq").load("minikilt", "test")[:n_examples + 2]
    demos, exs = exs[:2], exs[2:]
    corpus = load_corpus()
    rng = np.random.default_rng(0)
    inputs = [lm_input(ex, demos, clip_passages(tok, [corpus[i] for i in rng.choice(len(corpus), k)], passage_tokens))
              for ex in exs]
    n_tok = int(np.mean([len(tok(t)["input_ids"]) for t in inputs]))
    per = timed(lambda: generate(model, tok, inputs, max_new_tokens),
                warm=lambda: generate(model, tok, inputs[:1], 2)) / len(inputs)
    note(f"reader: {per:.2f} s/example")
    return per, n_tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--minilm-passages", type=int, default=64)
    ap.add_argument("--lm-passages", type=int, default=32)
    ap.add_argument("--matmul-seconds", type=float, default=1.0)
    ap.add_argument("--train-batch", type=int, default=1)
    ap.add_argument("--train-tokens", type=int, default=32)
    ap.add_argument("--no-train", action="store_true", help="skip the forward+backward step")
    ap.add_argument("--reader-examples", type=int, default=8, help="prompts of the reader row")
    ap.add_argument("--rounds", type=int, default=2, help="alternating fp32/bf16 rounds per row; the best counts")
    ap.add_argument("--quick-estimate", action="store_true", help="also estimate the quick preset's main costs")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    facts = machine_facts()
    res = {"machine": facts, "loadavg_1min_at_start": os.getloadavg()[0],
           "picked": str(pick_dtype("auto", "cpu")).replace("torch.", ""), "rows": {}}
    rows = res["rows"]
    rows["matmul 2048^2 (GFLOP/s)"] = {n: matmul_gflops(d, seconds=a.matmul_seconds) for n, d in DTYPES}
    note(f"matmul: {rows['matmul 2048^2 (GFLOP/s)']}")
    texts, n_corpus = sample_passages(max(a.minilm_passages, a.lm_passages))
    m = bench_minilm(texts[:a.minilm_passages], a.rounds)
    rows[f"minilm encode, {a.minilm_passages} passages (passages/s)"] = m

    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    model, tok = load_lm("smollm2-135m")
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=128))
    rows[f"smollm2 layers 0..{im.b} embed, {a.lm_passages} passages, l_max 128 (passages/s)"] = \
        bench_lm_slice(im, texts[:a.lm_passages], a.rounds)
    if not a.no_train:
        rows[f"smollm2 fwd+bwd, batch {a.train_batch} x {a.train_tokens} tokens (s/step)"] = \
            bench_train_step(model, tok, texts, a.train_batch, a.train_tokens, a.rounds)
    reader = {}
    for name, dtype in DTYPES:
        m_d, tok_d = load_lm("smollm2-135m", dtype=dtype)
        reader[name], n_tok = bench_reader(m_d, tok_d, n_examples=a.reader_examples)
        del m_d
    rows[f"reader greedy decode, {a.reader_examples} prompts (s/example)"] = reader
    if a.quick_estimate:
        picked = "bf16" if res["picked"] == "bfloat16" else "fp32"
        per_ex = reader[picked]
        res["quick_estimate"] = {
            "corpus_passages": n_corpus, "minilm_dtype": picked,
            "minilm_index_s_estimated": n_corpus / m[picked],
            "minilm_index_s_estimated_other_dtype": n_corpus / m["fp32" if picked == "bf16" else "bf16"],
            "reader_s_per_example": per_ex, "reader_prompt_tokens_mean": n_tok,
            "reader_s_quick_estimated": per_ex * 3 * 8 * 12,  # 3 systems x 8 tasks x 12 examples
        }
    res["bench_seconds"] = time.perf_counter() - t_start

    print(f"machine: {facts['cpu_model']}, {facts['cpus']} CPUs, torch threads {torch.get_num_threads()}, "
          f"native bf16: {facts['cpu_native_bf16']} {facts['cpu_bf16_flags']}, torch {facts['torch']}, "
          f"gpu {facts['gpu']}; load average at start {res['loadavg_1min_at_start']:.1f}")
    print(f"harness picks (bf16=auto): {res['picked']}\n")
    width = max(len(k) for k in rows)
    print(f"{'':{width}}  {'fp32':>9}  {'bf16':>9}  bf16/fp32")
    for k, v in rows.items():
        print(f"{k:{width}}  {v['fp32']:9.2f}  {v['bf16']:9.2f}  {v['bf16'] / v['fp32']:9.2f}")
    if "quick_estimate" in res:
        q = res["quick_estimate"]
        print(f"\nquick preset (estimates): MiniLM index of {q['corpus_passages']} passages in {q['minilm_dtype']} "
              f"~{q['minilm_index_s_estimated']:.0f} s "
              f"(other dtype ~{q['minilm_index_s_estimated_other_dtype']:.0f} s); "
              f"reader {q['reader_s_per_example']:.2f} s/example at ~{q['reader_prompt_tokens_mean']} prompt tokens "
              f"-> ~{q['reader_s_quick_estimated']:.0f} s for 3 systems x 8 tasks x 12 examples")
    print(f"\n(bench took {res['bench_seconds']:.0f} s)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
