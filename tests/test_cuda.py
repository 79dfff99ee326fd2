"""bf16 on the GPU against fp32 on the CPU: the layer-group forward (bottom-layer passage keys, query
vectors) and the reading (passages' KV in layers b..t, prompt logits) of a tiny random Llama agree.

Marked `cuda`; skipped where there is no CUDA. IMPRAG_CUDA_TEST_DEVICE=cpu runs the same checks with a
bf16 model on the CPU (the dry run scripts/gpu-check.sh --dry does), so the test code is exercised on
machines without a GPU too. Tolerances: bf16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4%), so
after a few layers the outputs differ by ~1% relative; the bars below are set for a 4-layer model and
still fail on a real bug (a wrong layer, position or mask moves the cosine far below 0.99)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from imprag_bench.imprag.layers import positions_from_mask
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.tiny import tiny_llama

DEVICE = os.environ.get("IMPRAG_CUDA_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]

PROMPTS = ["Q: who wrote Hamlet? A:", "Q: x A:", "Q: what is the capital of France and why? A:"]
PASSAGES = [["Paris is the capital of France.", "Hamlet was written by Shakespeare."],
            ["Rome is old."], ["Water boils at 100 C at sea level.", "Bananas are yellow."]]
CFG = dict(b=1, t=2, l_max=48, k=2)


def _pair(tok):
    """(fp32 CPU model, bf16 model on DEVICE) with the same random weights, wrapped as ImpRAG."""
    ref = ImpRAGModel(tiny_llama(n_layers=4, hidden=128, heads=4, kv_heads=2), tok, ImpRAGConfig(**CFG))
    low = tiny_llama(n_layers=4, hidden=128, heads=4, kv_heads=2).to(DEVICE, torch.bfloat16)
    return ref, ImpRAGModel(low, tok, ImpRAGConfig(**CFG))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_bottom_layers_bf16_device_agree_with_fp32_cpu(tok):
    ref, low = _pair(tok)
    for fn, texts in (("embed_passages", sum(PASSAGES, [])), ("embed_queries", PROMPTS)):
        want = getattr(ref, fn)(texts)
        got = np.asarray(getattr(low, fn)(texts), dtype=np.float32)
        assert got.shape == want.shape
        assert _cosines(got, want).min() > 0.995, fn  # CPU bf16: 0.9998; a wrong layer b: -0.26
    # the device's vectors rank the passages as the CPU's do
    q_ref, p_ref = ref.embed_queries(PROMPTS), ref.embed_passages(sum(PASSAGES, []))
    q_low = np.asarray(low.embed_queries(PROMPTS), np.float32)
    p_low = np.asarray(low.embed_passages(sum(PASSAGES, [])), np.float32)
    assert ((q_ref @ p_ref.T).argmax(1) == (q_low @ p_low.T).argmax(1)).all()


def test_reading_bf16_device_agrees_with_fp32_cpu(tok):
    ref, low = _pair(tok)
    out = []
    for im in (ref, low):
        ids, mask = im.prompt_batch(PROMPTS)
        with torch.no_grad():
            logits = im.forward_logits(ids, mask, passages=PASSAGES)
        out.append((logits[mask].float().cpu().numpy(), mask.cpu()))
    (want, m_ref), (got, m_low) = out
    assert torch.equal(m_ref, m_low)
    assert _cosines(got, want).min() > 0.99  # CPU bf16: 0.998; a wrong layer t: 0.88
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.9  # CPU bf16: 0.95; a wrong layer t: 0.57
    # and passages still matter on the device (the reading path ran, not a passage-free forward)
    ids, mask = low.prompt_batch(PROMPTS)
    with torch.no_grad():
        plain = low.forward_logits(ids, mask, position_ids=positions_from_mask(mask, 2 * CFG["l_max"]))
    assert (plain[mask].float().cpu().numpy() - got).std() > 10 * np.abs(got - want).mean()
