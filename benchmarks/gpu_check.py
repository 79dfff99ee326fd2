"""Index-build and per-example latency figures of a tiny random Llama on one device (scripts/gpu-check.sh).

Needs nothing but the working tree and its Python packages: the model is random-init (8 layers, 512 wide,
~20M parameters, made in memory), the tokenizer is byte-level, the passages are seeded word salad. Prints
one table: passages/s of the bottom-layer encoder in bf16, the whole `build_index` (Flat) time, and the
per-example latency of two-stage generation at batch 1 (total, synchronized; the stage split is read from
host clocks and is approximate on CUDA, whose kernels run asynchronously).

    python benchmarks/gpu_check.py --device cuda --json results/gpu_check.json
    python benchmarks/gpu_check.py --dry          # CPU, small sizes: checks the script itself
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the of and in to was is for on as by with he at from his an were are which this also be has or had "
         "first one their its new after who they have her she two been other when there all during into school "
         "time may years more most only over city some world would where later up such used many can state "
         "about national out known university united then made").split()


def passages(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"Title {i}\n" + " ".join(rng.choice(WORDS) for _ in range(100)) for i in range(n)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(device: str, n_passages: int, n_examples: int, k: int, batch: int, dtype: torch.dtype) -> dict:
    from imprag_bench.harness.index import build_index
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from tests.tiny import byte_tokenizer, tiny_llama

    tok = byte_tokenizer()
    lm = tiny_llama(n_layers=8, hidden=512, heads=8, kv_heads=2).to(device, dtype)
    im = ImpRAGModel(lm, tok, ImpRAGConfig(b=2, t=5, l_max=128, k=k))
    texts = passages(n_passages)
    ids = [f"p{i}" for i in range(n_passages)]
    res = {"device": device, "dtype": str(dtype).replace("torch.", ""), "params_m": sum(p.numel() for p in lm.parameters()) / 1e6,
           "passages": n_passages, "examples": n_examples, "k": k}
    if device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name()
    im.embed_passages(texts[:batch], batch)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    im.embed_passages(texts, batch)
    sync(device)
    res["encode_passages_per_s"] = n_passages / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index = build_index(tmp, ids, lambda s, e: im.embed_passages(texts[s:e], batch), {"kind": "gpu-check"},
                            desc="gpu-check index", chunk=max(64, batch))
        res["build_index_s"] = time.perf_counter() - t0
    by_id = dict(zip(ids, texts))
    prompts = [f"Q: what is title {i} known for? A:" for i in range(n_examples)]
    retrieve = lambda e, kk: index.search(e, kk)[1]  # noqa: E731
    im.generate(prompts[:1], retrieve, lambda r: [by_id[x] for x in r], k=k, max_new_tokens=2, batch_size=1)
    sync(device)
    t0 = time.perf_counter()
    out = im.generate(prompts, retrieve, lambda r: [by_id[x] for x in r], k=k, max_new_tokens=16, batch_size=1)
    sync(device)
    res["example_total_ms"] = 1000 * (time.perf_counter() - t0) / n_examples
    res.update({f"example_{s}_ms": 1000 * v / n_examples for s, v in out.timings.items()})
    if device.startswith("cuda"):
        res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry", action="store_true", help="CPU, 200 passages, 2 examples: check the script runs")
    ap.add_argument("--passages", type=int, default=20_000)
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.dry:
        args.device, args.passages, args.examples, args.batch = "cpu", 200, 2, 32
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to measure (use --dry to exercise the script on CPU)")
        return 0
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    res = measure(args.device, args.passages, args.examples, args.k, args.batch, dtype)
    width = max(map(len, res))
    for key, v in res.items():
        print(f"{key:<{width}}  {v:.2f}" if isinstance(v, float) else f"{key:<{width}}  {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
