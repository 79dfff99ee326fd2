"""The layer-group forward (imprag_bench.imprag.layers via ImpRAGModel.forward_logits) against HF's own forward."""
from __future__ import annotations

import pytest
import torch

from imprag_bench.imprag.layers import positions_from_mask
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.tiny import tiny_llama

PROMPTS = ["Q: who wrote it? A:", "Q: x A:", "a longer prompt about the capital of France, Q: A:"]
PASSAGES = [["Paris is the capital of France.", "Rome is in Italy and old."],
            ["Short one.", "Another passage, longer than the first one by a lot of bytes."],
            ["Only one passage here."]]


pytestmark = pytest.mark.usefixtures("one_thread")


def hf_logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits


@pytest.mark.parametrize("arch,extra", [("llama", {}), ("llama", {"num_key_value_heads": 4}),
                                        ("qwen2", {}), ("mistral", {})])
@pytest.mark.parametrize("bt", [(0, 3), (1, 2), (2, 2)])
def test_no_passages_equals_hf_forward_left_padded(tok, arch, extra, bt):
    kv = extra.pop("num_key_value_heads", 2)
    model = tiny_llama(arch=arch, kv_heads=kv, **extra)
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=bt[0], t=bt[1], l_max=32, k=2))
    ids, mask = im.prompt_batch(PROMPTS)
    assert not mask.all(), "the batch must be left-padded"
    for offset in (0, 64):
        pos = positions_from_mask(mask, offset)
        ref = hf_logits(model, ids, mask, pos)
        with torch.no_grad():
            got = im.forward_logits(ids, mask, position_ids=pos)
        torch.testing.assert_close(got[mask], ref[mask], atol=1e-5, rtol=1e-5)


def test_default_positions_match_hf_generate_rule(tok):
    model = tiny_llama()
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=32))
    ids, mask = im.prompt_batch(PROMPTS)
    with torch.no_grad():
        got = im.forward_logits(ids, mask)
    ref = hf_logits(model, ids, mask, positions_from_mask(mask))
    torch.testing.assert_close(got[mask], ref[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_reading_all_layers_equals_hf_on_concatenation(tok, arch):
    """b=0, t=N-1: reading passages as prefix KV == HF forward over [passages; prompt] (positions 0.. for the
    passages, k*l_max.. for the prompt); batched with left-padded prompts and right-padded passages."""
    model = tiny_llama(arch=arch)
    l_max = 48
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=0, read_top_layers=True, l_max=l_max, passage_encoding="concat"))
    assert im.t == im.n_layers - 1
    ids, mask = im.prompt_batch(PROMPTS)
    with torch.no_grad():
        got = im.forward_logits(ids, mask, passages=PASSAGES)
    k_max = max(im.cfg.k, *(len(p) for p in PASSAGES))  # the prompt starts at k*l_max, as at inference
    for i, passages in enumerate(PASSAGES):
        p_tok = sum(im.reading_tokens(passages), [])
        q_tok = ids[i][mask[i]].tolist()
        full = torch.tensor([p_tok + q_tok])
        pos = torch.tensor([list(range(len(p_tok))) + [k_max * l_max + j for j in range(len(q_tok))]])
        with torch.no_grad():
            ref = model(input_ids=full, position_ids=pos).logits[0, len(p_tok):]
        torch.testing.assert_close(got[i][mask[i]], ref, atol=1e-5, rtol=1e-5)


def test_passages_change_only_layers_b_to_t(tok):
    """Sanity: the prefix holds KV for layers b..t only, starts the prompt at k*l_max, and changes the logits."""
    model = tiny_llama()
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=48, k=2))
    ids, mask = im.prompt_batch(PROMPTS)
    with torch.no_grad():
        plain = im.forward_logits(ids, mask, position_ids=positions_from_mask(mask, 2 * 48))
        read = im.forward_logits(ids, mask, passages=PASSAGES)
    assert (plain[mask] - read[mask]).abs().max() > 1e-3
    kv = im.encode_passages_kv(PASSAGES)
    assert sorted(kv.keys) == [1, 2] and kv.offset == 2 * 48


def test_independent_equals_concat_for_one_passage(tok):
    model = tiny_llama()
    one = [[p[0]] for p in PASSAGES]
    ids = None
    outs = []
    for mode in ("concat", "independent"):
        im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=48, passage_encoding=mode))
        ids, mask = im.prompt_batch(PROMPTS)
        with torch.no_grad():
            outs.append(im.forward_logits(ids, mask, passages=one)[mask])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_independent_restarts_positions(tok):
    """Independent encoding: each passage's KV equals that passage encoded alone from position 0."""
    model = tiny_llama()
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=48, passage_encoding="independent"))
    kv = im.encode_passages_kv(PASSAGES)
    alone = im.encode_passages_kv([[PASSAGES[1][1]]])
    n1 = kv.mask.shape[1] // 2  # example 1, second passage occupies the second half
    real = kv.mask[1, n1:]
    for layer in (1, 2):
        torch.testing.assert_close(kv.keys[layer][1, :, n1:][:, real], alone.keys[layer][0], atol=1e-5, rtol=1e-5)
    assert kv.mask[2, n1:].sum() == 0  # example 2 has one passage: the second slot is all padding


def test_gradients_flow(tok):
    model = tiny_llama()
    im = ImpRAGModel(model, tok, ImpRAGConfig(b=1, t=2, l_max=32))
    ids, mask = im.prompt_batch(PROMPTS[:2])
    loss = im.forward_logits(ids, mask, passages=PASSAGES[:2])[mask].logsumexp(-1).mean()
    loss.backward()
    assert model.model.layers[0].self_attn.k_proj.weight.grad.abs().sum() > 0  # passages' bottom layers
    assert model.model.layers[3].mlp.down_proj.weight.grad.abs().sum() > 0


@pytest.mark.integration
def test_smollm2_layer_groups_equal_hf_and_harness_generate():
    """The real SmolLM2-135M: layer-group logits == HF forward (left-padded batch); greedy answers without
    passages == imprag_bench.harness.lm.generate; reading passages and retrieval embeddings have the expected shapes."""
    from imprag_bench.harness.lm import generate, load_lm

    model, tok = load_lm("smollm2-135m")
    im = ImpRAGModel(model, tok, ImpRAGConfig(l_max=64, k=2))
    assert (im.b, im.t) == (8, 20)
    prompts = ["Q: what is the capital of France? A:", "Q: who wrote Hamlet? A:", "Is this statement true? Cats bark. A:"]
    ids, mask = im.prompt_batch(prompts)
    pos = positions_from_mask(mask)
    with torch.no_grad():
        got = im.forward_logits(ids, mask, position_ids=pos)
    torch.testing.assert_close(got[mask], hf_logits(model, ids, mask, pos)[mask], atol=1e-4, rtol=1e-4)
    assert im.generate(prompts, max_new_tokens=8).texts == generate(model, tok, prompts, max_new_tokens=8)
    passages = [["Paris is the capital and largest city of France.", "Berlin is the capital of Germany."]] * 3
    out = im.generate(prompts, passages=passages, max_new_tokens=8)
    assert len(out.texts) == 3 and all(isinstance(t, str) for t in out.texts)
    assert im.embed_passages(passages[0]).shape == (2, 3 * 64) == im.embed_queries(prompts[:2]).shape
