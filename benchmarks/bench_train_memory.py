"""Training memory per GPU for ImpRAG and the explicit-query baselines, Llama-3.2-3B and Llama-3.1-8B on 8 x 80 GB.

Why: the paper trains on 8 GPUs; the FSDP2 engine (one unit per decoder layer, a root unit with embeddings, final
norm and lm_head; bf16 compute, fp32 master/grads/AdamW sharded over the ranks; non-reentrant activation
checkpointing per decoder layer; gradient accumulation; target-only chunked lm_head) must fit every system at
global batch 64. This script MEASURES the activations and computes the rest from parameter counts.

What is measured (CPU, bf16 weights as the bf16 working parameters, random init, batch 1 = one example, at the
paper's shapes: prompt 512, 10 passages x l_max 128, target 64, 5 + 5 own candidates): the public configs
(imprag_bench/harness/presets/models/*.json) are built with 5 decoder layers, and one training forward of each
system runs through the repo's own code (ImpRAGModel/LayerRunner, HF LlamaModel, LMSliceEncoder) under
`train_memory_measure.LiveBytes`, which labels every live tensor byte by stream and decoder layer:
  imprag    J_gen: 10 passages encoded as prefix KV through layers 0..t, prompt+target reading them in b..t,
            loss on the 64 targets; J_ret: E_p of the 10 own candidates (layers 0..b), E_q of the prompt, NCE.
            Small model b=2, t=3: layers 0-1 bottom, 2 middle, 3 = t, 4 top, one of each kind the full model has.
  reader    RA-IT / RA-DIT / RA-DIT-Llama reader stage: 10 x 128 passages as text + prompt + target (1856 tokens)
            through HF's model, loss on the 64 targets.
  slice     RA-DIT-Llama retriever stage: the trained copy of layers 0..b (HF forward of b+1 layers) embeds the
            prompt and the 10 own candidates; the frozen LM's P_T runs under no_grad (`teacher`).
Scaled, not measured: each layer kind's bytes are repeated to the full depth (3B: 28 layers, b=7, t=19; 8B: 32,
b=7, t=23); one example -> m examples is linear (batch 1 measured); the no-grad teachers are measured with 4
(ImpRAG) / 2 (frozen LM) pairs and the lm_head chunk cut by the same factor, then scaled x8 to 32 / 16 pairs
(ImpRAG's also adds the prefix KV of its 13 / 17 reading layers). Formula only: RA-DIT's Contriever (BERT-base).
The backward transient (peak over forward+backward minus what the forward left) is measured with checkpointing,
parameter grads freed as they arrive (FSDP2 reduce-scatters them per unit; the grads column counts them).

    OMP_NUM_THREADS=2 python benchmarks/bench_train_memory.py [--json results/bench_train_memory.json] [--tiny]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_memory_measure import (LABEL, IdsTokenizer, LiveBytes,  # noqa: E402
                                  label_layers, saved_bytes, texts)
from train_memory_plan import SMALL, counts, plan_rows, print_tables  # noqa: E402

MODELS = {"llama-3.2-3b": (7, 19), "llama-3.1-8b": (7, 23)}  # the paper's (b, t)
PAPER = dict(prompt=512, k=10, l_max=128, target=64, n_cand=10, n_pos=5, chunk=1024, teacher_pairs=32,
             teacher_measured=4, lm_batch=16, lm_measured=2)
TINY = dict(prompt=16, k=2, l_max=8, target=4, n_cand=4, n_pos=2, chunk=8, teacher_pairs=4, teacher_measured=2,
            lm_batch=4, lm_measured=2)
TINY_MODEL = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  vocab_size=1024, bos_token_id=1, eos_token_id=2)


def load_config(name: str, tiny: bool):
    """The repo's copy of the public config.json (tiny: the same fields at toy widths)."""
    from transformers import LlamaConfig

    raw = json.loads((ROOT / "imprag_bench/harness/presets/models" / f"{name}.json").read_text())
    return LlamaConfig(**{**raw, **(TINY_MODEL if tiny else {})})


def build(cfg):
    """The config with SMALL['n_layers'] decoder layers, random init, bf16, SDPA; embeddings and lm_head frozen
    (their saved tensors are the token ids and 64 target rows: negligible), layer grads freed on arrival."""
    from transformers import LlamaForCausalLM

    small = cfg.__class__(**{**cfg.to_dict(), "num_hidden_layers": SMALL["n_layers"]})
    torch.manual_seed(0)
    hf = LlamaForCausalLM._from_config(small, dtype=torch.bfloat16, attn_implementation="sdpa")
    for p in (*hf.model.embed_tokens.parameters(), *hf.lm_head.parameters()):
        p.requires_grad_(False)
    for p in hf.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda q: setattr(q, "grad", None))
    label_layers(hf)
    return hf


def target_labels(ids: torch.Tensor, n_target: int) -> torch.Tensor:
    """Labels of sequences whose last `n_target` tokens are the target (-100 elsewhere)."""
    labels = torch.full_like(ids, -100)
    labels[:, -n_target:] = ids[:, -n_target:]
    return labels


def run_step(hf, step, ac: bool) -> dict:
    """Run `step()` (-> loss) under LiveBytes: live bytes by label after the forward; without checkpointing also
    the saved-tensor-hook total; with it the backward too, for the transient above what the forward left."""
    tr = LiveBytes(hf)
    with tr:
        if ac:
            loss, saved = step(), None
        else:
            loss, saved = saved_bytes(step, tr.skip)
        LABEL.update(stream="-", layer="-")
        live = tr.live()
        retained = sum(live.values())
        fwd_peak = tr.peak
        if ac:
            LABEL["stream"] = "backward"
            loss.backward()
            LABEL.update(stream="-", layer="-")
    out = {"live": {f"{s}|{layer}": n for (s, layer), n in live.items()}, "retained": retained,
           "fwd_peak": fwd_peak}
    if saved is not None:
        out["saved_hooks"] = saved
    if ac:
        out["transient"] = tr.peak - retained
        out["at_peak"] = {f"{s}|{layer}": n for (s, layer), n in tr.at_peak.items()}
        out["grads_at_peak"] = tr.grads_at_peak
    return out


def imprag_step(hf, S, ac: bool, gen: torch.Generator):
    """One example's J_gen + J_ret (warmup NCE) forward through ImpRAG's own code."""
    from imprag_bench.harness.lm import pad
    from imprag_bench.harness.training.losses import multilabel_nce, target_logliks
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    V = hf.config.vocab_size
    engine_ac(hf, ac)
    m = ImpRAGModel(hf, IdsTokenizer(), ImpRAGConfig(b=SMALL["b"], t=SMALL["t"], k=S["k"], l_max=S["l_max"],
                                                     passage_sep=""))
    P, T = S["prompt"], S["target"]

    def step():
        LABEL["stream"] = "gen.passages"
        prefix = m.encode_passages_kv([texts(gen, V, S["k"], S["l_max"])])
        LABEL["stream"] = "gen.prompt"
        ids = torch.randint(1, V, (1, P + T), generator=gen)
        ids, mask, labels = m.token_labels([ids[0, :P].tolist()], [ids[0, P:].tolist()])
        h = m.forward_hidden(ids, mask, prefix)
        LABEL["stream"] = "gen.loss"
        nll = -target_logliks(h, m.runner.logits, labels, S["chunk"])[0].sum() / T
        LABEL["stream"] = "ret.passages"
        c_ids, c_mask = pad(m.index_tokens(texts(gen, V, S["n_cand"], S["l_max"])), 0, "right")
        e_p = m.passage_embeddings(c_ids, c_mask).float()
        LABEL["stream"] = "ret.query"
        q = torch.randint(1, V, (1, P), generator=gen)
        e_q = m.query_embeddings(q, torch.ones_like(q, dtype=torch.bool), S["k"] * S["l_max"]).float()
        LABEL["stream"] = "ret.loss"
        pos = torch.zeros(1, S["n_cand"], dtype=torch.bool)
        pos[0, :S["n_pos"]] = True
        return nll + multilabel_nce(e_q @ e_p.T, pos, ~pos)
    out = run_step(hf, step, ac)
    engine_ac(hf, False)
    return out


def engine_ac(hf, ac: bool) -> None:
    """The training engine's activation checkpointing of every decoder layer, on or off."""
    from imprag_bench.harness.training.engine import decoder_layers, prepare_layers

    prepare_layers(decoder_layers(hf), ac)
    hf.train()


def reader_step(hf, S, ac: bool, gen: torch.Generator):
    """RA reader: passages as text + prompt + target in one sequence through HF's model, loss on the targets."""
    from imprag_bench.harness.training.losses import target_logliks

    engine_ac(hf, ac)
    n, T = S["k"] * S["l_max"] + S["prompt"] + S["target"], S["target"]

    def step():
        LABEL["stream"] = "reader"
        ids = torch.randint(1, hf.config.vocab_size, (1, n), generator=gen)
        h = hf.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
        LABEL["stream"] = "reader.loss"
        return -target_logliks(h, hf.lm_head, target_labels(ids, T), S["chunk"])[0].sum() / T
    out = run_step(hf, step, ac)
    engine_ac(hf, False)
    return out


def slice_step(hf, S, ac: bool, gen: torch.Generator):
    """RA-DIT-Llama retriever: the whole small model is the slice (b = n_layers - 1), E_q of the prompt and E_p of
    the own candidates with gradients, NCE."""
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder
    from imprag_bench.harness.training.losses import multilabel_nce

    engine_ac(hf, ac)
    enc, V = LMSliceEncoder(hf, IdsTokenizer(), l_max=S["l_max"]), hf.config.vocab_size

    def step():
        LABEL["stream"] = "slice.query"
        e_q = enc.query_embed(texts(gen, V, 1, S["prompt"])).float()
        LABEL["stream"] = "slice.passages"
        e_p = enc.passage_embed(texts(gen, V, S["n_cand"], S["l_max"])).float()
        LABEL["stream"] = "slice.loss"
        pos = torch.zeros(1, S["n_cand"], dtype=torch.bool)
        pos[0, :S["n_pos"]] = True
        return multilabel_nce(e_q @ e_p.T, pos, ~pos)
    out = run_step(hf, step, ac)
    engine_ac(hf, False)
    return out


@torch.no_grad()
def teachers(hf, S, gen: torch.Generator) -> dict:
    """Peak bytes of the no-grad likelihood passes: ImpRAG's P_T (pairs of one passage as prefix KV + prompt +
    target) and the frozen LM's P_T of the retriever stages (passage text + prompt + target), each with fewer
    pairs and the lm_head chunk cut by the same factor; `kv` = the ImpRAG pass's prefix KV bytes."""
    from imprag_bench.harness.training.losses import target_logliks
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    hf.eval()
    V, P, T, out = hf.config.vocab_size, S["prompt"], S["target"], {}
    m = ImpRAGModel(hf, IdsTokenizer(), ImpRAGConfig(b=SMALL["b"], t=SMALL["t"], k=S["k"], l_max=S["l_max"],
                                                     passage_sep=""))
    n = S["teacher_measured"]
    chunk = max(1, S["chunk"] * n // S["teacher_pairs"])
    with LiveBytes(hf) as tr:
        LABEL["stream"] = "teacher"
        prefix = m.encode_passages_kv([[t] for t in texts(gen, V, n, S["l_max"])])
        kv = tr.total()
        ids = torch.randint(1, V, (n, P + T), generator=gen)
        ids, mask, labels = m.token_labels([x[:P].tolist() for x in ids], [x[P:].tolist() for x in ids])
        h = m.forward_hidden(ids, mask, prefix)
        target_logliks(h, m.runner.logits, labels, chunk)
        del prefix, h
    out["imprag"] = {"pairs": n, "chunk": chunk, "peak": tr.peak, "kv": kv}
    n = S["lm_measured"]
    chunk, L = max(1, S["chunk"] * n // S["lm_batch"]), S["l_max"] + P + T
    with LiveBytes(hf) as tr:
        LABEL["stream"] = "lm_teacher"
        ids = torch.randint(1, V, (n, L), generator=gen)
        h = hf.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
        target_logliks(h, hf.lm_head, target_labels(ids, T), chunk)
        del h
    out["frozen_lm"] = {"pairs": n, "chunk": chunk, "peak": tr.peak}
    LABEL.update(stream="-", layer="-")
    return out


def measure(name: str, S: dict, tiny: bool) -> dict:
    """Every measurement of one model: each system's step without and with checkpointing, and the teachers."""
    t0 = time.perf_counter()
    cfg = load_config(name, tiny)
    hf = build(cfg)
    n_params = sum(p.numel() for p in hf.parameters())
    gen = torch.Generator().manual_seed(0)
    out = {"config": {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                   "num_key_value_heads", "head_dim", "num_hidden_layers",
                                                   "vocab_size", "tie_word_embeddings")},
           "paper_bt": MODELS[name], "small_model_params": n_params, "systems": {}}
    c = counts(out["config"])
    if n_params != SMALL["n_layers"] * c["layer"] + c["root"]:  # the plan's parameter formula, checked
        raise RuntimeError(f"{name}: {n_params} parameters built, the formula says {SMALL['n_layers']} x "
                           f"{c['layer']} + {c['root']}")
    for system, fn in (("imprag", imprag_step), ("reader", reader_step), ("slice", slice_step)):
        out["systems"][system] = {"no_ac": fn(hf, S, False, gen), "ac": fn(hf, S, True, gen)}
        print(f"  {name} {system}: measured ({time.perf_counter() - t0:.0f} s)", flush=True)
    out["teachers"] = teachers(hf, S, gen)
    out["seconds"] = time.perf_counter() - t0
    del hf
    return out


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the measurements, the plan and the tables here")
    ap.add_argument("--tiny", action="store_true", help="toy widths and shapes (seconds; for the test)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replan", type=Path, metavar="JSON",
                    help="no measuring: the plan and tables again from this file's measurements (after a change of "
                         "the formulas in train_memory_plan.py); written back with --json")
    a = ap.parse_args(argv)
    if a.replan:
        res = json.loads(a.replan.read_text())
        res["plan"], res["measured_table"] = plan_rows(res)
        res["tables"] = print_tables(res)
        if a.json:
            a.json.write_text(json.dumps(res, indent=1, default=str))
        return res
    torch.set_num_threads(a.threads)
    S = TINY if a.tiny else PAPER
    t0 = time.perf_counter()
    res = {"shapes": S, "tiny": a.tiny, "cpu": cpu_name(), "torch": torch.__version__, "threads": a.threads,
           "small_model": SMALL, "models": {}}
    for name in a.models:
        res["models"][name] = measure(name, S, a.tiny)
    res["plan"], res["measured_table"] = plan_rows(res)
    res["seconds"] = time.perf_counter() - t0
    res["tables"] = print_tables(res)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
