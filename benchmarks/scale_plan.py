"""The full-corpus plan's numbers (docs/scale-out.md), each computed here from a formula and its inputs.

Inputs, and where each comes from:
  measured  results/bench_imprag_tiny.json, written on this machine by
            `python benchmarks/bench_imprag.py --passages 50 --examples 2 --ks 5 --threads 1 --json ...`:
            mean passage tokens (mini-KILT passages, cut at l_max 128), mean prompt tokens, SmolLM2's
            GFLOP/passage by the same FLOP formula and the passages/s it reached (so the formula's cost
            model is checked against a measured time), and the per-stage split of an example's latency.
  model     Llama-3.2-3B and Llama-3.1-8B shapes from their config.json (hidden, intermediate, heads,
            kv heads, head dim, layers, vocab, tied embeddings) and the paper's layer groups b=7, t=19/23.
  stated    bf16 dense peak 990 TFLOP/s (H100/H200 SXM), assumed MFU (--mfu, default 0.4), HBM bandwidth
            (H100 3.35 TB/s, H200 4.8 TB/s), 21,015,324 passages (DPR 100-word Wikipedia split), k=10,
            16 new tokens, batch 8, 1024-d keys (8 kv heads x 128).

    python benchmarks/scale_plan.py [--gpus 8] [--mfu 0.4] [--json results/scale_plan.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_hours import stage_hours  # noqa: E402
MODELS = {  # config.json of meta-llama/Llama-3.2-3B and meta-llama/Llama-3.1-8B; b, t from the paper
    "Llama-3.2-3B": dict(h=3072, i=8192, hq=24, hkv=8, d=128, layers=28, vocab=128256, tied=True, b=7, t=19),
    "Llama-3.1-8B": dict(h=4096, i=14336, hq=32, hkv=8, d=128, layers=32, vocab=128256, tied=False, b=7, t=23),
}
PEAK, HBM = 990e12, {"H100": 3.35e12, "H200": 4.8e12}
N_PASSAGES, DIM, K, NEW_TOKENS, BATCH = 21_015_324, 1024, 10, 16, 8


def layer_params(m: dict) -> int:
    """q, o: h x hq*d; k, v: h x hkv*d; MLP gate/up/down: 3 x h x i (norms are negligible)."""
    return 2 * m["h"] * m["hq"] * m["d"] + 2 * m["h"] * m["hkv"] * m["d"] + 3 * m["h"] * m["i"]


def plan(measured: dict, gpus: int, mfu: float) -> dict:
    ix, inf = measured["index"], measured["infer"]
    tok_p, tok_q = ix["mean_tokens"], inf["mean_prompt_tokens"]
    rate = PEAK * mfu
    out = {"inputs": {"passage_tokens": tok_p, "prompt_tokens": tok_q, "peak_flops": PEAK, "mfu": mfu,
                      "gpus": gpus, "n_passages": N_PASSAGES, "k": K, "new_tokens": NEW_TOKENS, "batch": BATCH},
           "check_on_this_machine": {
               "smollm2_gflop_per_passage": ix["gflop_per_passage"],
               "fp32_passages_per_s": ix["fp32"]["passages_per_s"],
               "achieved_gflops": ix["gflop_per_passage"] * ix["fp32"]["passages_per_s"],
               "matmul_gflops": ix["fp32"]["matmul_gflops"], "ratio": ix["fp32"]["ratio"],
               "stage_ms_k5": {s: inf["by_k"]["5"][s] for s in ("bottom", "passage_encoding", "reading",
                                                                   "decoding", "total_ms")}},
           "models": {}}
    for name, m in MODELS.items():
        p_layer = layer_params(m)
        p_all = m["layers"] * p_layer + m["vocab"] * m["h"] * (1 if m["tied"] else 2)
        weights_gb = 2 * p_all / 1e9  # bf16
        # index: the bottom 8 layers (0..7; ImpRAG runs 0..6 and layer 7's k_proj, so this is an upper bound)
        f_pass = 2 * 8 * p_layer * tok_p
        idx_s = N_PASSAGES * f_pass / rate
        # evaluation, per example: k passages through layers 0..t (+ their attention over the k*L
        # concatenation), the prompt through all layers, NEW_TOKENS decoding steps (+ the lm head)
        kl = K * tok_p
        f_ex = (2 * (m["t"] + 1) * p_layer * kl + 4 * (m["t"] + 1) * kl * kl * m["hq"] * m["d"]
                + 2 * m["layers"] * p_layer * (tok_q + NEW_TOKENS) + 2 * m["vocab"] * m["h"] * (1 + NEW_TOKENS))
        decode_s = {g: NEW_TOKENS * 2 * p_all / bw / BATCH for g, bw in HBM.items()}  # weights read per step
        ex_s = {g: f_ex / rate + decode_s[g] for g in HBM}
        act_gb = 256 * 128 * (4 * m["h"] + 3 * m["i"]) * 2 / 1e9  # 256 passages x 128 tokens, bf16, one layer
        kv_gb = BATCH * (m["t"] + 1) * kl * 2 * m["hkv"] * m["d"] * 2 / 1e9  # passages' K and V, bf16
        closed = 2 * m["layers"] * p_layer * (tok_q + NEW_TOKENS) / rate + decode_s["H100"]
        eval_s = {"closed-book": closed, **{s: ex_s["H100"] for s in ("bm25", "dense", "ra-it", "ra-dit",
                                                                       "ra-dit-llama", "imprag")}}
        reproduce = stage_hours(m, p_layer, tok_p, N_PASSAGES, eval_s, rate, gpus)
        out["models"][name] = {
            "reproduce": reproduce,
            "params_per_layer": p_layer, "params_total": p_all, "weights_bf16_gb": weights_gb,
            "index_gflop_per_passage": f_pass / 1e9, "index_flop_total": N_PASSAGES * f_pass,
            "index_gpu_hours_1": idx_s / 3600, f"index_hours_on_{gpus}": idx_s / 3600 / gpus,
            "index_gpu_gb_per_rank": weights_gb + act_gb,
            "eval_tflop_per_example": f_ex / 1e12,
            "eval_ms_per_example": {g: 1000 * v for g, v in ex_s.items()},
            f"eval_hours_per_10k_on_{gpus}": {g: 10_000 * v / 3600 / gpus for g, v in ex_s.items()},
            "eval_gpu_gb_per_rank": weights_gb + kv_gb,
        }
    n = N_PASSAGES
    out["index_size_gb"] = {"vectors_fp32 (Flat)": n * DIM * 4 / 1e9, "vectors_fp16": n * DIM * 2 / 1e9,
                            "IVF65536,PQ64 codes+ids": n * (64 + 8) / 1e9,
                            "IVF65536 centroids": 65536 * DIM * 4 / 1e9,
                            "PQ training sample (500k, fp32)": 500_000 * DIM * 4 / 1e9,
                            "shards on disk (fp32)": n * DIM * 4 / 1e9}
    cpu = ix["fp32"]["matmul_gflops"] * 1e9 * 16  # this machine's measured 1-thread GEMM rate x 16 cores
    out["faiss_cpu_hours"] = {"cpu_flops_assumed": cpu,
                              "IVF65536 k-means (500k x 10 iters)": 500_000 * 65536 * DIM * 2 * 10 / cpu / 3600,
                              "IVF65536 assignment of all vectors": n * 65536 * DIM * 2 / cpu / 3600,
                              "IVF4096 assignment of all vectors": n * 4096 * DIM * 2 / cpu / 3600,
                              "PQ64 encoding (256 centroids x 1024 per vector)": n * 256 * DIM * 2 / cpu / 3600}
    return out


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def hours_table(res: dict, gpus: int) -> str:
    """Markdown: projected GPU-hours per stage of `reproduce --preset paper` (3B) and `paper-8b` (8B)."""
    models = list(res["models"])
    stages = list(res["models"][models[0]]["reproduce"]["gpu_hours"])
    rows = ["| stage | " + " | ".join(f"{n} GPU-h" for n in models) + " |", "|---|" + "---|" * len(models)]
    rows += [f"| {s} | " + " | ".join(f"{res['models'][n]['reproduce']['gpu_hours'][s]:.1f}" for n in models) + " |"
             for s in stages]
    rows.append("| **total** | " + " | ".join(f"**{res['models'][n]['reproduce']['gpu_hours_total']:.0f}**"
                                             for n in models) + " |")
    rows.append(f"| wall hours on {gpus} GPUs | " + " | ".join(
        f"{res['models'][n]['reproduce'][f'wall_hours_on_{gpus}']:.1f}" for n in models) + " |")
    return (f"\nreproduce --preset paper (Llama-3.2-3B) / paper-8b (Llama-3.1-8B), MFU {res['inputs']['mfu']} of "
            f"{res['inputs']['peak_flops'] / 1e12:.0f} TFLOP/s (a formula, not a GPU measurement; the paper: ~160 "
            "GPU-hours for ImpRAG, ~96 per baseline, H100):\n" + "\n".join(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--measured", type=Path, default=ROOT / "results" / "bench_imprag_tiny.json")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.measured.exists():
        print(f"error: {args.measured}: missing; run benchmarks/bench_imprag.py --json {args.measured} first",
              file=sys.stderr)
        return 2
    res = _round(plan(json.loads(args.measured.read_text()), args.gpus, args.mfu))
    print(json.dumps(res, indent=1))
    print(hours_table(res, args.gpus))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
