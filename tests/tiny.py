"""Tiny random-init models and a byte-level tokenizer for fast ImpRAG tests (seconds on 2 CPU cores)."""
from __future__ import annotations

import torch


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: one token per byte (newline is 'Ċ'), plus <pad> and
    <eos>; left padding like imprag_bench.harness.lm.load_lm."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<pad>"], vocab["<eos>"] = len(vocab), len(vocab) + 1
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    tok.padding_side = "left"
    return tok


def tiny_llama(n_layers: int = 4, hidden: int = 64, heads: int = 4, kv_heads: int = 2, vocab: int = 258,
               seed: int = 0, arch: str = "llama", **extra):
    """A random-init fp32 Llama (or Qwen2 / Mistral with arch=...) causal LM with SDPA attention, eval mode."""
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
           "mistral": (MistralConfig, MistralForCausalLM)}[arch]
    cfg = cls[0](vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                 num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
                 pad_token_id=256, eos_token_id=257, bos_token_id=257, tie_word_embeddings=False,
                 attn_implementation="sdpa", **extra)
    torch.manual_seed(seed)
    model = cls[1](cfg).eval()
    with torch.no_grad():  # larger weights than the default init, so layers and positions matter visibly
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
    return model


def run_tiny_reproduce(tmp_path, preset: str, systems: list[str], train_set: list[str], run_set: list[str]):
    """`imprag-bench reproduce --preset PRESET` as a subprocess on a tiny random Llama (saved under tmp_path) over
    200 passages, with the small settings every such test needs; returns the results folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    model = tmp_path / "tiny"
    tiny_llama(n_layers=4).save_pretrained(model)
    byte_tokenizer().save_pretrained(model)
    small = [f"model={model}", "corpus_limit=200"]
    out = tmp_path / preset
    cmd = [sys.executable, "-m", "imprag_bench.harness.cli", "reproduce", "--preset", preset, "--out", str(out),
           "--systems", *systems, "--train-set", *small, "batch_size=4", "bf16=false", "train_fewshot=0",
           "max_prompt_tokens=48", "max_target_tokens=8", *train_set,
           "--run-set", *small, "max_new_tokens=3", "fewshot=1", *run_set, "--no-costs"]
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=1200)  # minutes on 2 contended cores
    assert res.returncode == 0, res.stderr[-3000:]
    return out
