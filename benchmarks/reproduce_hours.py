"""Projected GPU-hours per stage of `imprag-bench reproduce --preset paper` / `paper-8b` (benchmarks/scale_plan.py).

Every figure is FLOPs / (MFU x bf16 peak): a formula with stated inputs, NOT a measurement on a GPU (none was
lent to these sessions; the MFU is assumed, `--mfu`). Per token and layer a matmul pass costs 2 P_layer FLOPs
forward; training adds 4 (backward) and, with activation checkpointing, 2 more (the recomputed forward): 8.
Attention's own FLOPs and the LM head are left out except where noted (they are a few % at these lengths).

Inputs (the paper presets: presets/train/shared.yaml `paper`, presets/reproduce/paper.yaml):
  data       NQ + HotpotQA 5,000 each (retrieval items); 8 instruction sets + denoising + sentence generation,
             5,000 each; plain text 10% of the mix; 10 epochs at batch 64; the last 70% self-distillation
  tokens     prompt + target at the budgets' caps (512 + 64: an upper bound), passages 128 (l_max), 10 read,
             5 + 5 candidates per query; the teacher scores every candidate of C (own + the global
             micro-batch's in-batch ones) with the prompt: |C| = 10 x the retrieval items of a batch of 64
  retrievers the RA-DIT retriever stage (Contriever, BERT-base 110M) and RA-DIT-Llama's (the layer-0..b slice)
             run `retriever_steps` = the shared steps of 64 retrieval items, P_T from the frozen LM over own
             candidates (10 per query)
  indexes    21,015,324 passages x T_p tokens (measured mean, scale_plan's input): Contriever once (pseudo-labels,
             dense, RA-IT share it), again for RA-DIT's tuned Contriever; layers 0..b for ImpRAG and RA-DIT-Llama
  eval       the paper's eval sets (51,869 examples over the eight tasks, paper spec section 5) x 7 systems,
             k = 10 passages, 16 new tokens: scale_plan's per-example seconds on an H100 (FLOPs at the MFU plus
             the decoding steps' weight reads at HBM bandwidth, batch 8) for the RAG systems
"""
from __future__ import annotations

BERT_PARAMS, BERT_LAYERS = 109_482_240, 12
N_RET, N_INSTRUCT, EPOCHS, BATCH, DISTILL = 10_000, 50_000, 10, 64, 0.7
PROMPT, TARGET, L_MAX, K_READ, N_CAND = 512, 64, 128, 10, 10
EVAL_EXAMPLES = 3_610 + 4_326 + 5_600 + 12_576 + 5_000 + 3_724 + 10_444 + 4_784
PAPER_GPU_HOURS = {"imprag": 160, "baselines (each)": 96}  # paper section 4, on H100s


def train_flops(m: dict, p_layer: int) -> dict:
    """FLOPs of one whole training run per system (the formulas of the module docstring)."""
    n_items = (N_RET + N_INSTRUCT) / 0.9
    steps = n_items * EPOCHS / BATCH
    ret_per_batch = BATCH * N_RET / n_items
    L, b, t, seq = m["layers"], m["b"], m["t"], PROMPT + TARGET
    head = 6 * m["vocab"] * m["h"] * TARGET  # the LM head on target tokens, fwd + bwd
    other = 8 * p_layer * L * seq + head  # an instruction / plain item: J_gen, all layers
    # ImpRAG: J_gen reading 10 passages' KV (0..t) + the prompt (all layers); J_ret: candidates and query (0..b)
    imp_ret = (8 * p_layer * ((t + 1) * K_READ * L_MAX + L * seq) + head
               + 8 * p_layer * (b + 1) * (N_CAND * L_MAX + PROMPT))
    teacher = N_CAND * ret_per_batch * 2 * p_layer * ((t + 1) * L_MAX + L * seq)  # per retrieval item, no grad
    imprag = steps * (ret_per_batch * (imp_ret + DISTILL * teacher) + (BATCH - ret_per_batch) * other)
    reader = steps * (ret_per_batch * (8 * p_layer * L * (K_READ * L_MAX + seq) + head)
                      + (BATCH - ret_per_batch) * other)
    p_t = N_CAND * 2 * p_layer * L * (L_MAX + seq)  # the frozen LM's likelihoods of a query's own candidates
    bert = 8 * BERT_PARAMS * (PROMPT + N_CAND * L_MAX)
    slice_ = 8 * p_layer * (b + 1) * (PROMPT + N_CAND * L_MAX)
    return {"imprag": imprag, "ra-it": reader, "ra-dit": reader + steps * BATCH * (bert + p_t),
            "ra-dit-llama": reader + steps * BATCH * (slice_ + p_t), "steps": steps}


def stage_hours(m: dict, p_layer: int, tok_p: float, n_passages: int, eval_s_per_example: dict,
                rate: float, gpus: int) -> dict:
    """GPU-hours per stage of the reproduce command (all GPUs together) and wall hours on `gpus`."""
    tr = train_flops(m, p_layer)
    contriever = n_passages * 2 * BERT_PARAMS * tok_p * 1.3  # BERT's WordPiece: ~1.3 tokens per Llama token
    lm_index = n_passages * 2 * p_layer * (m["b"] + 1) * tok_p
    flops = {"pseudo-labels + dense / RA-IT index (Contriever)": contriever,
             "train ra-it": tr["ra-it"], "train ra-dit": tr["ra-dit"], "index ra-dit (tuned Contriever)": contriever,
             "train ra-dit-llama": tr["ra-dit-llama"], "index ra-dit-llama (layers 0..b)": lm_index,
             "train imprag": tr["imprag"], "index imprag (layers 0..b)": lm_index,
             }
    hours = {k: v / rate / 3600 for k, v in flops.items()}
    hours["eval (7 systems x 51,869 examples)"] = EVAL_EXAMPLES * sum(eval_s_per_example.values()) / 3600
    total = sum(hours.values())
    imprag = hours["train imprag"] + hours["index imprag (layers 0..b)"]
    return {"gpu_hours": hours, "gpu_hours_total": total, f"wall_hours_on_{gpus}": total / gpus,
            "imprag_train_and_index_gpu_hours": imprag, "train_steps": tr["steps"],
            "paper_gpu_hours": PAPER_GPU_HOURS, "source": "formula (FLOPs / (MFU x peak)); no GPU measurement"}
