"""From the measurements of benchmarks/bench_train_memory.py to per-GPU memory on 8 x 80 GB at global batch 64.

Per GPU, W = 8 ranks, per-rank micro-batch m, gradient accumulation A = 64 / (W m); P = trained parameters,
P_layer = one decoder layer, P_root = the root unit (embeddings, final norm, lm_head: counted once when tied),
P_frozen = a frozen LM kept as an fp32 replica (the retriever stages' P_T: loaded as the trainable copy's source).
GB = 1e9 bytes.
Units as harness.training.engine lays them out: the readers and ImpRAG (its passes in lockstep) one FSDP2 unit
per decoder layer; the retrievers' copies (a data-dependent number of layer calls per step) ONE unit, so their
bf16 weights are whole during a step and their whole unsharded grads meet the fp32 reduce-scatter copy at the end
of the backward:
  weights     = 4 P / W  (fp32 master, sharded)  +  per layer: 2 (P_root + 2 P_layer)  (bf16 gathered: the root
                unit for the whole step, the current and the prefetched layer unit); one unit: 2 P  +  4 P_frozen
  grads       = 4 P / W  (fp32, sharded; reduce-scattered every micro-batch)  +  per layer: 2 P_root  (the root's
                unsharded bf16 grad, alive through the backward)  +  6 P_layer  (one unit's unsharded bf16 grad + its
                fp32 copy for the reduce-scatter); one unit: 6 P;  both  +  2 n_multi P_layer  (bf16 partial grads of
                the layers the step calls more than once: autograd sums a weight's grads in its input buffer until
                the last use is back-propagated; measured on the small model, `grads_at_peak`. n_multi: ImpRAG
                t+1 (layers 0..t run the prompt and the passages), the LM slice b (query and passages), BERT 12,
                the reader 0)
  optimizer   = 8 P / W  (AdamW exp_avg + exp_avg_sq, fp32, sharded)
  activations = m R + max(m X, T)   R = retained bytes per example after the forward with checkpointing, at full
                depth; X = measured backward transient per example less the parameter grads in it (one layer's
                recompute, the chunked loss's logits, activation grads; ImpRAG: + the prefix-KV grads of the
                reading layers the small model lacks, one layer's KV each); T = the no-grad likelihood pass of a
                distillation step (32 ImpRAG pairs or 16 frozen-LM pairs, chunk 1024), independent of m
  headroom    = 80 - (weights + grads + optimizer + activations); the plan names the largest m in {1, 2, 4, 8} with
                headroom >= 10% (8 GB, for the CUDA context, NCCL buffers and fragmentation)
RA-DIT's retriever (Contriever = BERT-base, 109.5M parameters, 12 layers, h = 768) is not measured: per example
R = 2 h (12 + 1) bytes per token (bf16 layer inputs) and X = (34 + 4) h bytes per token (one layer without
checkpointing, Korthikanti et al. 2022 for 16-bit BERT with dropout, SDPA so no s^2 term, + activation grads),
over 512 + 10 x 128 tokens.
"""
from __future__ import annotations

SMALL = dict(n_layers=5, b=2, t=3)  # the measured depth: layers 0-1 bottom, 2 middle (= b), 3 = t, 4 top
GPUS, GLOBAL_BATCH, GPU_GB, MIN_HEADROOM, GB = 8, 64, 80.0, 0.10, 1e9
BERT = dict(params=109_482_240, layer=7_087_872, root=24_427_776, h=768, layers=12)
SYSTEMS = [  # (row name, measured system, teacher)
    ("imprag (warmup)", "imprag", None),
    ("imprag (distill)", "imprag", "imprag"),
    ("reader: ra-it / ra-dit / ra-dit-llama", "reader", None),
    ("ra-dit-llama retriever (distill)", "slice", "frozen_lm"),
    ("ra-dit retriever, BERT-base (distill; formula)", "bert", "frozen_lm"),
]
MAIN_LAYER = {"gen.passages": SMALL["b"], "gen.prompt": SMALL["b"], "ret.passages": 0, "ret.query": 0, "reader": 0,
              "slice.query": 0, "slice.passages": 0}


def layer_map(stream: str, n: int, b: int, t: int) -> list | None:
    """For each layer of the full model, the measured small-model layer of the same kind (None: a loss stream,
    every byte is per-stream). gen: bottom / middle / t / top; ret: full / partial b-1 / layer b's projection;
    reader: every layer, the last one's output feeding the final norm; slice: the b+1 layers of the copy."""
    ns, bs, ts = SMALL["n_layers"], SMALL["b"], SMALL["t"]
    if stream.startswith("gen."):
        return [0 if i < b else bs if i < t else ts if i == t else ns - 1 for i in range(n)]
    if stream.startswith("ret.") and not stream.endswith(".loss"):
        return [0 if i < b - 1 else 1 if i == b - 1 else 2 for i in range(b + 1)]
    if stream == "reader":
        return [0] * (n - 1) + [ns - 1]
    if stream.startswith("slice.") and not stream.endswith(".loss"):
        return [0] * b + [ns - 1]
    return None


def stream_tokens(stream: str, S: dict) -> int:
    return {"gen.passages": S["k"] * S["l_max"], "gen.prompt": S["prompt"] + S["target"],
            "ret.passages": S["n_cand"] * S["l_max"], "ret.query": S["prompt"], "slice.query": S["prompt"],
            "slice.passages": S["n_cand"] * S["l_max"], "reader": S["k"] * S["l_max"] + S["prompt"] + S["target"]
            }.get(stream, 0)


def by_stream(live: dict) -> dict:
    out: dict = {}
    for key, nbytes in live.items():
        stream, layer = key.split("|")
        out.setdefault(stream, {})[layer] = out.setdefault(stream, {}).get(layer, 0) + nbytes
    return out


def full_depth(live: dict, cfg: dict, bt) -> dict:
    """Bytes per example at the full depth, per stream: the stream's fixed bytes + its layer kinds repeated."""
    n, (b, t) = cfg["num_hidden_layers"], bt
    out = {}
    for stream, layers in by_stream(live).items():
        lm = layer_map(stream, n, b, t)
        if lm is None:
            out[stream] = sum(layers.values())
        else:
            out[stream] = layers.get("-", 0) + sum(layers.get(str(j), 0) for j in lm)
    return out


def counts(cfg: dict) -> dict:
    """Parameter counts from the config: q, o: h x H_q d; k, v: h x H_kv d; gate, up, down: h x i; two RMSNorms."""
    h, i, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    layer = 2 * h * cfg["num_attention_heads"] * d + 2 * h * cfg["num_key_value_heads"] * d + 3 * h * i + 2 * h
    root = cfg["vocab_size"] * h * (1 if cfg["tie_word_embeddings"] else 2) + h
    return {"layer": layer, "root": root, "total": cfg["num_hidden_layers"] * layer + root}


ONE_UNIT = {"slice", "bert"}  # engine.fsdp_units "model" (RetrieverObjective); ImpRAG and the readers: "layer"


def memory(p: int, p_layer: int, p_root: int, p_frozen: int, n_multi: int, R: float, X: float, T: float,
           m: int, one_unit: bool = False) -> dict:
    """One plan row (GB), the formulas of the module docstring."""
    gathered = 2 * p if one_unit else 2 * (p_root + 2 * p_layer)
    w = 4 * p / GPUS + gathered + 4 * p_frozen
    g = 4 * p / GPUS + (6 * p if one_unit else 2 * p_root + 6 * p_layer) + 2 * n_multi * p_layer
    o = 8 * p / GPUS
    a = m * R + max(m * X, T)
    total = w + g + o + a
    return {"m": m, "accum": GLOBAL_BATCH // (GPUS * m), "weights_gb": w / GB, "grads_gb": g / GB,
            "optimizer_gb": o / GB, "activations_gb": a / GB, "total_gb": total / GB,
            "headroom_gb": GPU_GB - total / GB, "headroom_pct": 100 * (1 - total / GB / GPU_GB)}


def system_inputs(res: dict, name: str, system: str, teacher: str | None) -> dict:
    """(P, P_layer, P_root, P_frozen, n_multi, R, X, T, R without checkpointing, the small model's measured
    pending grads and their formula value) of one row, in parameters and bytes."""
    M, S = res["models"][name], res["shapes"]
    cfg, bt = M["config"], M["paper_bt"]
    c = counts(cfg)
    T = 0.0
    if teacher == "imprag":
        t = M["teachers"]["imprag"]
        r_small, r_full = SMALL["t"] - SMALL["b"] + 1, bt[1] - bt[0] + 1
        T = S["teacher_pairs"] / t["pairs"] * (t["peak"] + t["kv"] / r_small * (r_full - r_small))
    elif teacher == "frozen_lm":
        t = M["teachers"]["frozen_lm"]
        T = S["lm_batch"] / t["pairs"] * t["peak"]
    if system == "bert":
        tok, h = S["prompt"] + S["n_cand"] * S["l_max"], BERT["h"]
        return dict(p=BERT["params"], p_layer=BERT["layer"], p_root=BERT["root"], p_frozen=c["total"],
                    n_multi=BERT["layers"], R=2 * h * (BERT["layers"] + 1) * tok, X=(34 + 4) * h * tok, T=T,
                    R_no_ac=34 * h * BERT["layers"] * tok, g_small=None, g_small_formula=None)
    meas = M["systems"][system]
    R = sum(full_depth(meas["ac"]["live"], cfg, bt).values())
    R_no = sum(full_depth(meas["no_ac"]["live"], cfg, bt).values())
    X = meas["ac"]["transient"] - meas["ac"]["grads_at_peak"]
    n_multi, n_small = {"imprag": (bt[1] + 1, SMALL["t"] + 1), "slice": (bt[0], SMALL["n_layers"] - 1),
                        "reader": (0, 0)}[system]
    g = dict(n_multi=n_multi, g_small=meas["ac"]["grads_at_peak"], g_small_formula=2 * n_small * c["layer"])
    if system == "imprag":  # the prefix-KV grads of the reading layers the small model does not have
        kv_layer = by_stream(meas["ac"]["live"]).get("gen.passages", {}).get(str(SMALL["t"]), 0)
        X += kv_layer * ((bt[1] - bt[0] + 1) - (SMALL["t"] - SMALL["b"] + 1))
    if system == "slice":
        n_slice = bt[0] + 1
        return dict(p=n_slice * c["layer"] + c["root"], p_layer=c["layer"], p_root=c["root"], p_frozen=c["total"],
                    R=R, X=X, T=T, R_no_ac=R_no, **g)
    return dict(p=c["total"], p_layer=c["layer"], p_root=c["root"], p_frozen=0, R=R, X=X, T=T, R_no_ac=R_no, **g)


def plan_rows(res: dict) -> tuple[list, list]:
    """(plan rows: every model x system x m, with `named` on the plan's m; measurement rows per stream)."""
    plan, meas_rows = [], []
    for name, M in res["models"].items():
        cfg, bt, S = M["config"], M["paper_bt"], res["shapes"]
        for row, system, teacher in SYSTEMS:
            x = system_inputs(res, name, system, teacher)
            rows = [memory(x["p"], x["p_layer"], x["p_root"], x["p_frozen"], x["n_multi"], x["R"], x["X"], x["T"], m,
                           one_unit=system in ONE_UNIT) for m in (1, 2, 4, 8)]
            ok = [r for r in rows if r["headroom_pct"] >= 100 * MIN_HEADROOM]
            named = max(ok, key=lambda r: r["m"])["m"] if ok else None
            for r in rows:
                plan.append({"model": name, "system": row, **r, "named": r["m"] == named, "fits": named is not None,
                             "R_gb": x["R"] / GB, "R_no_ac_gb": x["R_no_ac"] / GB, "X_gb": x["X"] / GB,
                             "T_gb": x["T"] / GB, "params_b": x["p"] / 1e9, "n_multi": x["n_multi"],
                             "g_small_gb": None if x["g_small"] is None else x["g_small"] / GB,
                             "g_small_formula_gb": None if x["g_small"] is None else x["g_small_formula"] / GB})
        for system, meas in M["systems"].items():
            full = {k: full_depth(meas[k]["live"], cfg, bt) for k in ("no_ac", "ac")}
            small = {k: by_stream(meas[k]["live"]) for k in ("no_ac", "ac")}
            for stream in full["ac"]:
                tok, j = stream_tokens(stream, S), MAIN_LAYER.get(stream)
                per = {k: (small[k].get(stream, {}).get(str(j), 0) / tok / 1e3 if tok and j is not None else None)
                       for k in ("no_ac", "ac")}
                meas_rows.append({"model": name, "system": system, "stream": stream, "tokens": tok,
                                  "kb_per_token_layer_no_ac": per["no_ac"], "kb_per_token_layer_ac": per["ac"],
                                  "full_gb_no_ac": full["no_ac"].get(stream, 0) / GB,
                                  "full_gb_ac": full["ac"][stream] / GB})
    return plan, meas_rows


def markdown(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """A markdown table: cols = (header, key, format)."""
    def cell(v, fmt):
        return "" if v is None else format(v, fmt) if fmt else str(v)
    lines = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[k], f) for _, k, f in cols) + " |" for r in rows]
    return "\n".join(lines)


def print_tables(res: dict) -> dict:
    """Print (and return) the measurement table, the plan at the named micro-batch, and totals for every m."""
    meas = markdown(res["measured_table"], [
        ("model", "model", ""), ("system", "system", ""), ("stream", "stream", ""), ("tokens", "tokens", ""),
        ("KB/token/layer, no AC", "kb_per_token_layer_no_ac", ".1f"), ("KB/token/layer, AC", "kb_per_token_layer_ac",
                                                                         ".1f"),
        ("GB/example full depth, no AC", "full_gb_no_ac", ".3f"), ("GB/example full depth, AC", "full_gb_ac", ".3f")])
    named = [r for r in res["plan"] if r["named"]] + [r for r in res["plan"] if not r["fits"] and r["m"] == 1]
    plan = markdown(named, [
        ("model", "model", ""), ("system", "system", ""), ("m", "m", ""), ("accum", "accum", ""),
        ("weights", "weights_gb", ".1f"), ("grads", "grads_gb", ".1f"), ("optimizer", "optimizer_gb", ".1f"),
        ("activations", "activations_gb", ".1f"), ("total", "total_gb", ".1f"), ("headroom", "headroom_gb", ".1f"),
        ("headroom %", "headroom_pct", ".0f")])
    by = {}
    for r in res["plan"]:
        by.setdefault((r["model"], r["system"]), {"model": r["model"], "system": r["system"]})[f"m{r['m']}"] = r["total_gb"]
        by[(r["model"], r["system"])].update(R=r["R_gb"], R_no=r["R_no_ac_gb"], X=r["X_gb"], T=r["T_gb"],
                                             n=r["n_multi"], g=r["g_small_gb"], gf=r["g_small_formula_gb"])
    totals = markdown(list(by.values()), [
        ("model", "model", ""), ("system", "system", ""), ("R GB/example (AC)", "R", ".3f"),
        ("R GB/example (no AC)", "R_no", ".2f"), ("X GB/example", "X", ".3f"), ("T GB", "T", ".2f"),
        ("n_multi", "n", ""), ("pending grads, small model: measured", "g", ".2f"), ("formula", "gf", ".2f"),
        ("total m=1", "m1", ".1f"), ("m=2", "m2", ".1f"), ("m=4", "m4", ".1f"), ("m=8", "m8", ".1f")])
    print(f"\nMeasured activations ({res['cpu']}, torch {res['torch']}, {res['seconds']:.0f} s; "
          f"{'TINY shapes' if res['tiny'] else 'paper shapes'}):\n{meas}\n")
    print(f"Per GPU, 8 x 80 GB, global batch 64, at the micro-batch the plan names (GB):\n{plan}\n")
    print(f"Inputs and totals for every micro-batch (GB):\n{totals}")
    return {"measured": meas, "plan": plan, "totals": totals}
