"""The trained explicit-query baselines (RA-IT, RA-DIT, RA-DIT-Llama) on tiny random models, in seconds."""
import json

import pytest
import torch

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.records import Passage
from imprag_bench.harness.registry import SYSTEMS, TASKS, TRAINERS
from imprag_bench.harness.system import RunContext
from imprag_bench.harness.training import losses
from imprag_bench.harness.training.candidates import Candidates
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
from tests.tiny import byte_tokenizer, tiny_llama
from imprag_bench.harness.training.mix import TrainItem
from imprag_bench.harness.training.loop import TrainConfig, train
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.training.config import SharedTrainConfig
from imprag_bench.baselines.ra_dit import encoder_name
from imprag_bench.baselines.ra_objectives import (ReaderObjective, RetrieverObjective, TrainableRetriever,
                                     encode_triples)
from imprag_bench.harness.dense import DenseEncoder
from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PASSAGES = [Passage(f"p{i}", f"Title {i}", f"Passage number {i} says the answer is word{i}.") for i in range(8)]
CORPUS = Corpus("tiny", PASSAGES)


def items():
    return [
        TrainItem("ret:a", "retrieval", "Q: what does p0 say? A:", "word0", Candidates(("p0", "p1"), ("p2",))),
        TrainItem("ret:b", "retrieval", "Q: what does p3 say? A:", "word3", Candidates(("p3",), ("p4", "p5"))),
        TrainItem("pd:x", "denoise", "Recover [START] b a [END] A:", "a b"),
        TrainItem("txt:p6", "plain", "", PASSAGES[6].as_text()),
    ]


def tiny_dense(folder):
    """A tiny random BERT saved as a fine-tuned dense encoder folder, loaded as DenseEncoder."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=258, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=256)
    BertModel(cfg).eval().save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    (folder / "retriever.json").write_text(json.dumps({"kind": "dense", "normalise": True, "base": "tiny"}))
    return DenseEncoder(str(folder), bf16=False)


def tiny_lm_folder(folder):
    lm, tok = tiny_llama(n_layers=4), byte_tokenizer()
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def manual_loglik(lm, tok, context, target):
    ids = tok(context + target, add_special_tokens=False, return_tensors="pt")["input_ids"]
    n_t = len(tok(target, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids).logits[0, :-1].float(), -1)
    tgt = ids[0, 1:]
    return logp[torch.arange(len(tgt)), tgt][-n_t:].sum().item()


def test_ra_dit_retriever_loss_is_distillation_kl_of_scores_vs_lm_logliks_without_lm_gradient(tmp_path):
    lm, tok = tiny_llama(n_layers=2), byte_tokenizer()
    enc = tiny_dense(tmp_path / "enc")
    obj = RetrieverObjective(TrainableRetriever(enc), lm, tok, CORPUS, warmup_steps=0, passage_tokens=64)
    batch = items()
    out = obj.losses(batch, step=0, total_steps=10)
    assert set(out) == {"loss", "kl"}
    rows, cols, pos, own = obj.table(batch)
    assert [r.id for r in rows] == ["ret:a", "ret:b"] and cols == ["p0", "p1", "p2", "p3", "p4", "p5"]
    # independent P_T: the LM's log-likelihood of " target\n" after one passage block + the prompt
    ll = torch.full(own.shape, -1e4)
    for i, j in own.nonzero().tolist():
        ll[i, j] = manual_loglik(lm, tok, f"{PASSAGES[int(cols[j][1:])].as_text()}\n\n{rows[i].prompt}",
                                 f" {rows[i].target}\n")
    assert torch.allclose(obj.lm_logliks(rows, cols, own), ll, atol=1e-3)
    with torch.no_grad():
        e_q = enc.embed([r.prompt for r in rows])
        e_p = enc.embed([CORPUS[c].as_text() for c in cols])
    scores = (e_q @ e_p.T) * obj.retriever.score_scale
    want = losses.distillation_kl(scores, ll, torch.ones_like(own))
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-4, abs=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in lm.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.model.parameters())
    # warm-up steps use the multi-label NCE instead
    obj.warmup_steps = 5
    nce = obj.losses(batch, step=0, total_steps=10)
    assert set(nce) == {"loss", "nce"}
    assert nce["loss"].item() == pytest.approx(losses.multilabel_nce(scores, pos, ~pos).item(), rel=1e-4)


def test_ra_dit_llama_retriever_is_a_separate_copy_with_imprag_pooling(tmp_path):
    lm, tok = tiny_llama(n_layers=4), byte_tokenizer()
    enc = LMSliceEncoder.from_lm(lm, tok, b=1, l_max=32)
    assert enc.hf.config.num_hidden_layers == 2 and lm.config.num_hidden_layers == 4
    assert all(a.data_ptr() != b.data_ptr() for a in enc.hf.parameters() for b in lm.parameters())
    imp = ImpRAGModel(lm, tok, ImpRAGConfig(b=1, t=2, l_max=32))
    texts = [p.as_text() for p in PASSAGES[:3]]
    with torch.no_grad():
        assert torch.allclose(torch.tensor(enc.encode_passages(texts)),
                              torch.tensor(imp.embed_passages(texts)), atol=1e-5)
        assert torch.allclose(torch.tensor(enc.encode_queries(["Q: x? A:"])),
                              torch.tensor(imp.embed_queries(["Q: x? A:"], k=0)), atol=1e-4)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    slice_before = {k: v.clone() for k, v in enc.hf.state_dict().items()}
    obj = RetrieverObjective(TrainableRetriever(enc), lm, tok, CORPUS, warmup_steps=1, passage_tokens=32)
    ck = train(obj, items(), TrainConfig(out=str(tmp_path / "r"), steps=2, batch_size=4, lr=1e-3))
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())  # the reader is untouched
    assert any(not torch.equal(slice_before[k], v) for k, v in enc.hf.state_dict().items())
    meta = json.loads((ck / "retriever.json").read_text())
    assert meta["kind"] == "lm-slice" and meta["b"] == 1
    again = LMSliceEncoder.load(ck)
    assert torch.allclose(torch.tensor(again.encode_passages(texts)), torch.tensor(enc.encode_passages(texts)),
                          atol=1e-5)


def test_ra_it_objective_j_gen_covers_target_tokens_only():
    lm, tok = tiny_llama(n_layers=2), byte_tokenizer()
    ctx = {"ret:a": [PASSAGES[0]], "ret:b": [PASSAGES[3], PASSAGES[4]]}
    obj = ReaderObjective(lm, tok, ctx, passage_tokens=16)
    batch = items()
    triples = obj.triples(batch)
    assert triples[0][0].startswith("Title 0\n") and triples[0][1:] == (batch[0].prompt, " word0\n")
    assert triples[2] == ("", batch[2].prompt, " a b\n") and triples[3] == ("", "", PASSAGES[6].as_text())
    ids, mask, labels = encode_triples(tok, triples)
    pairs = [(a + b, c[:48]) for a, b, c in triples]
    for row, (c, t) in enumerate(pairs):
        n_c, n_t = len(tok(c)["input_ids"]) if c else 0, len(tok(t)["input_ids"])
        assert (labels[row, :n_c] == -100).all() and torch.equal(labels[row, n_c:n_c + n_t], ids[row, n_c:n_c + n_t])
        assert (labels[row, n_c + n_t:] == -100).all() and mask[row].sum() == n_c + n_t
    loss = obj.losses(batch, 0, 1)["loss"]
    logits = lm(input_ids=ids, attention_mask=mask.long()).logits
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None].clamp_min(0))[..., 0]
    keep = labels[:, 1:] != -100
    assert loss.item() == pytest.approx(-(lp * keep).sum().item() / keep.sum().item(), rel=1e-4)
    # passages are clipped like the Reader's (16 tokens of text)
    assert len(tok(obj.contexts["ret:a"][0].text)["input_ids"]) <= 16


@pytest.mark.parametrize("system", ["ra-it", "ra-dit", "ra-dit-llama"])
def test_trained_systems_load_a_checkpoint_and_predict_with_prompt_and_oracle_queries(tmp_path, system):
    lm_dir = tiny_lm_folder(tmp_path / "lm")
    from imprag_bench.harness.lm import load_lm
    lm, tok = load_lm(str(lm_dir))
    pointer, rfolder = None, None
    if system == "ra-dit-llama":
        rfolder = tmp_path / "slice"
        LMSliceEncoder.from_lm(lm, tok, b=1, l_max=32).save(rfolder)
    else:
        tiny_dense(tmp_path / "enc")
        if system == "ra-dit":
            rfolder = tmp_path / "enc"
        else:
            pointer = {"kind": "dense", "encoder": str(tmp_path / "enc")}
    obj = ReaderObjective(lm, tok, {"ret:a": [PASSAGES[0]]}, passage_tokens=16, retriever_folder=rfolder, retriever_pointer=pointer, meta={"system": system})
    ck = train(obj, items(), TrainConfig(out=str(tmp_path / "train"), steps=1, batch_size=4, lr=1e-4))
    load_lm(str(ck))  # the checkpoint is an ordinary HF LM folder
    ex = TASKS.get("nq").build({"id": "q1", "question": "what does p3 say?", "answers": ["word3"]})
    for query, want in (("prompt", ex.prompt), ("oracle", "what does p3 say?")):
        options = {"checkpoint": str(ck), "k": 2, "query": query, "max_new_tokens": 4}
        sys_ = SYSTEMS.get(system)(options)
        sys_.prepare(CORPUS, RunContext(options=options, cache_dir=tmp_path / "cache", demos={}))
        (pred,) = sys_.predict([ex])
        assert pred.query == want and len(pred.retrieved) == 2 and set(pred.retrieved) <= set(CORPUS.ids)
        assert "\n" not in pred.text
        assert sys_.reader.passage_tokens == 16  # the training budget, from the checkpoint's ra_config.json


def test_trained_systems_need_a_checkpoint():
    from imprag_bench.harness.errors import UserError
    with pytest.raises(UserError, match="train it first"):
        SYSTEMS.get("ra-dit")({})


@pytest.mark.parametrize("name", ["ra-it", "ra-dit", "ra-dit-llama"])
def test_trainer_presets_resolve(name):
    t = TRAINERS.get(name)
    imp = TRAINERS.get("imprag")
    for preset in ("quick", "full", "paper"):
        cfg = t.config(preset, ["steps=3", "n_read=2"], out="somewhere")
        assert cfg["steps"] == 3 and cfg["n_read"] == 2 and cfg["out"] == "somewhere" and cfg["preset"] == preset
        assert {"batch_size", "retriever_steps", "model", "n_pos", "n_hard"} <= set(cfg.keys())
        shared = imp.config(preset, ["steps=3", "n_read=2"])  # the matched budget: every shared key agrees
        assert all(cfg[k] == shared[k] for k in SharedTrainConfig.keys() if k not in ("out", "recipe", "default_recipe", "additions"))
    assert t.config("paper").recipe == "paper" and encoder_name(t.config("paper")) == "facebook/contriever-msmarco"
    with pytest.raises(UserError, match="did you mean 'n_read'"):
        t.config("quick", ["n_reed=2"])


def test_recipes_are_named_and_the_paper_recipe_carries_only_the_budgets_additions():
    from imprag_bench.harness.training.config import default_out
    imp = TRAINERS.get("imprag")
    cpu, paper = imp.config("full"), imp.config("full", recipe="paper")
    assert cpu.recipe == cpu.default_recipe == "cpu-additions" and paper.recipe == "paper"
    assert set(cpu.additions) - set(paper.additions) >= {"stage0", "refit", "random-negatives"}
    assert paper.stage0_steps == paper.refit_steps == paper.random_negatives == 0 and paper.score_scale == 1.0
    assert default_out("imprag", cpu) == "runs/train/imprag-full"
    assert default_out("imprag", paper) == "runs/train/imprag-full-paper"
    with pytest.raises(UserError, match="no recipe 'cpu'"):
        imp.config("full", recipe="cpu")
    with pytest.raises(UserError, match="--recipe"):
        imp.config("full", ["recipe=paper"])


def test_a_finished_reader_stage_returns_its_checkpoint_without_retrieving_again(tmp_path):
    from imprag_bench.baselines.ra_dit import train_reader

    class Ranked:
        calls = 0

        def search(self, prompts, k):
            Ranked.calls += 1
            return [["p0"] for _ in prompts]

    cfg = {"n_read": 1, "model": str(tiny_lm_folder(tmp_path / "lm")), "device": "cpu", "l_max": 16,
           "max_prompt_tokens": 32, "max_target_tokens": 8, "bf16": False, "steps": 1, "batch_size": 4, "lr": 1e-4,
           "weight_decay": 0.0, "grad_clip": 1.0, "lr_warmup": 0.0, "seed": 0, "ckpt_every": 10}
    first = train_reader(cfg, CORPUS, items(), Ranked(), tmp_path / "out", "ra-it")
    assert Ranked.calls == 1
    assert train_reader(cfg, CORPUS, items(), Ranked(), tmp_path / "out", "ra-it") == first
    assert Ranked.calls == 1  # the finished stage neither retrieved nor loaded the LM again
    with pytest.raises(UserError, match="different run"):  # another step count is not "finished"
        train_reader({**cfg, "steps": 2}, CORPUS, items(), Ranked(), tmp_path / "out", "ra-it")
