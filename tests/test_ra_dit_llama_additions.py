"""RA-DIT-Llama's `cpu-additions` recipe (ImpRAG's retriever additions on its LM-slice copy) on tiny random
models, in seconds: stage 0 changes only the slice's layer-b q/k and lowers the whole-corpus NCE; random
negatives are extra stop-grad negative columns (hand-checked NCE, never scored by the LM); the lr scale
covers the whole slice; the recipe mirrors ImpRAG's; a stopped run resumes to identical weights; on the same
layers the slice's stage 0 takes ImpRAG's steps."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from imprag_bench.baselines.ra_objectives import NO_LM_PASS, RetrieverObjective, TrainableRetriever
from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder
from imprag_bench.baselines.retrievers.slice_fit import fit_slice, slice_features
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import TRAINERS
from imprag_bench.harness.training import losses as L
from imprag_bench.harness.training.loop import TrainConfig, param_groups
from imprag_bench.harness.training.negatives import random_passages
from imprag_bench.harness.training.projection_fit import ProjectionFitConfig, fit_inputs
from tests.test_ra_baselines import CORPUS, items, tiny_lm_folder
from tests.tiny import byte_tokenizer, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
SCALE = 0.25  # 1/sqrt(head_dim) of the tiny model: head_dim 16


def slice_encoder():
    torch.manual_seed(0)
    lm, tok = tiny_llama(n_layers=4), byte_tokenizer()
    return lm, tok, LMSliceEncoder.from_lm(lm, tok, b=1, l_max=32)


def test_slice_stage0_fits_only_layer_b_q_k_and_lowers_the_whole_corpus_nce(tmp_path):
    lm, tok, enc = slice_encoder()
    assert enc.head_dim ** -0.5 == SCALE
    prompts, positives = fit_inputs(items())
    assert prompts == [items()[0].prompt, items()[1].prompt] and positives == [["p0", "p1"], ["p3"]]
    xq, xp = slice_features(enc, prompts, CORPUS.texts, False, tmp_path / "cache")
    q_proj, k_proj = enc.projections
    with torch.no_grad():  # the features project to the slice's own embeddings
        assert torch.allclose(k_proj(xp), enc.passage_embed(CORPUS.texts), atol=1e-5)
        assert torch.allclose(enc.group_mean(q_proj(xq)), enc.query_embed(prompts), atol=1e-5)

    def nce():
        with torch.no_grad():
            return L.corpus_nce(enc.query_embed(prompts) @ enc.passage_embed(CORPUS.texts).T, [[0, 1], [3]],
                                scale=SCALE).item()
    before, w0 = nce(), {k: v.clone() for k, v in enc.hf.state_dict().items()}
    cfg = ProjectionFitConfig(steps=20, lr=1e-2, batch_size=2, bf16=False)
    fit_slice(enc, items(), CORPUS.ids, CORPUS.texts, cfg, tmp_path / "s0", SCALE, tmp_path / "cache")
    assert nce() < before - 0.1
    changed = {k for k, v in enc.hf.state_dict().items() if not torch.equal(w0[k], v)}
    assert changed == {"model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"}
    assert all(p.grad is None for p in enc.hf.parameters())  # no stale gradient for the training that follows
    log = (tmp_path / "s0/projection-warmup-log.jsonl").read_text().splitlines()
    assert len(log) == 20
    _, _, other = slice_encoder()  # a rerun loads the saved fit (1 step asked: it would differ if it fitted)
    fit_slice(other, items(), CORPUS.ids, CORPUS.texts, ProjectionFitConfig(steps=1, bf16=False), tmp_path / "s0",
              SCALE)
    assert all(torch.equal(a, b) for a, b in zip(other.hf.state_dict().values(), enc.hf.state_dict().values()))


def objective(seed: int, **kw):
    lm, tok, enc = slice_encoder()
    obj = RetrieverObjective(TrainableRetriever(enc, SCALE), lm, tok, CORPUS, warmup_steps=1, passage_tokens=32,
                             random_negatives=3, negative_pool=CORPUS.ids, seed=seed, **kw)
    return obj, enc


def test_random_negatives_are_extra_stop_grad_negative_columns_never_scored_by_the_lm():
    its = items()[:2]
    cols = ["p0", "p1", "p2", "p3", "p4", "p5"]  # own positives and hard negatives of both queries
    seed = next(s for s in range(100) if len([p for p in random_passages(CORPUS.ids, 3, s, 0) if p not in cols]) == 2)
    obj, enc = objective(seed)
    assert obj.table(its)[1] == cols
    extra = [p for p in random_passages(CORPUS.ids, 3, seed, 0) if p not in cols]
    assert obj.extra_negatives(cols, 0) == extra and sorted(extra) == ["p6", "p7"]
    got = obj.losses(its, 0, 4)["nce"].item()
    with torch.no_grad():
        s = obj.scores(its, cols + extra).tolist()  # the extras scored like ordinary columns
    pos = [{"p0", "p1"}, {"p3"}]
    total = 0.0  # Eq. 3 by hand: every column that is not an own positive is a negative, the extras too
    for i, row in enumerate(s):
        neg = sum(math.exp(x) for c, x in zip(cols + extra, row) if c not in pos[i])
        total += sum(-math.log(math.exp(x) / (math.exp(x) + neg)) for c, x in zip(cols + extra, row) if c in pos[i])
    assert abs(got - total / 2) < 1e-4
    no_extra, _ = objective(seed)
    no_extra.random_negatives = 0
    assert abs(no_extra.losses(its, 0, 4)["nce"].item() - got) > 1e-4  # the extras are in the loss
    obj.scores(its, cols, extra)[:, 6:].sum().backward()  # stop-grad on the extras' side: E_q gets a gradient,
    q_proj, k_proj = enc.projections  # k_proj (only passages use it) none
    assert q_proj.weight.grad.any() and (k_proj.weight.grad is None or not k_proj.weight.grad.any())
    seen = []
    orig = obj.lm_logliks
    obj.lm_logliks = lambda its_, cols_, own: seen.append((cols_, own, orig(its_, cols_, own))) or seen[-1][2]
    extra1 = obj.extra_negatives(cols, 1)
    obj.losses(its, 1, 4)  # distillation: the extras widen P_R's normaliser with P_T = 0
    (cols1, own1, ll1), = seen
    assert cols1 == cols + extra1 and not own1[:, 6:].any() and (ll1[:, 6:] == NO_LM_PASS).all()


def test_lr_scale_covers_the_whole_slice():
    obj, enc = objective(0, lr_scale=0.1)
    params = list(obj.parameters())
    groups = param_groups(params, obj.lr_scales(), TrainConfig(out="x", steps=1, lr=1e-4))
    assert sum(len(g["params"]) for g in groups) == len(params) and all(g["lr"] == pytest.approx(1e-5) for g in groups)
    assert objective(0)[0].lr_scales() == {}


def test_recipe_mirrors_imprag_and_lists_its_additions():
    ra, imp = TRAINERS.get("ra-dit-llama"), TRAINERS.get("imprag")
    for budget in ("quick", "full"):
        cfg, mine = ra.config(budget), imp.config(budget)
        assert cfg.recipe == cfg.default_recipe == mine.recipe == "cpu-additions"
        own = set(cfg.additions) - set(ra.config(budget, recipe="paper").additions)
        want = {"stage0", "random-negatives", "retriever-lr-scale", "attention-scale"} | (
            {"refit"} if budget == "full" else set())
        assert own == want and own == set(mine.additions) - {"own-teacher"} - set(imp.config(budget, recipe="paper").additions)
        for key in ("stage0_steps", "stage0_lr", "refit_steps", "random_negatives", "retriever_lr_scale", "score_scale"):
            assert cfg[key] == mine[key], key
        paper = ra.config(budget, recipe="paper")
        assert paper.stage0_steps == paper.refit_steps == paper.random_negatives == 0
        assert paper.retriever_lr_scale == 1.0 and paper.score_scale == 1.0
        assert paper.retriever_steps == cfg.retriever_steps
    from imprag_bench.baselines.ra_dit import run_ra_dit, run_ra_it
    for run, name in ((run_ra_it, "ra-it"), (run_ra_dit, "ra-dit")):  # the slice's keys are refused there
        with pytest.raises(UserError, match="ra-dit-llama"):
            run(TRAINERS.get(name).config("quick", ["stage0_steps=5"]))


def test_stopped_cpu_additions_run_resumes_to_identical_weights(tmp_path, monkeypatch):
    import imprag_bench.baselines.ra_dit as ra

    monkeypatch.setattr(ra, "training_data", lambda cfg, out: (out.mkdir(parents=True, exist_ok=True), (CORPUS, items()))[1])
    model = tiny_lm_folder(tmp_path / "lm")
    sets = [f"model={model}", "device=cpu", "bf16=false", "steps=2", "batch_size=2", "retriever_steps=4",
            "retriever_batch_size=2", "ckpt_every=1", "l_max=32", "n_read=1", "max_prompt_tokens=64",
            "max_target_tokens=8", "b=1", "stage0_steps=3", "refit_steps=3", "random_negatives=3", "warmup_share=0.5",
            f"cache_dir={tmp_path / 'cache'}"]
    t = TRAINERS.get("ra-dit-llama")
    stopped = t.config("full", sets + ["stop_after=1"], out=str(tmp_path / "stopped"))
    assert "refit" in stopped.additions and stopped.retriever_lr_scale == 0.1
    ck = ra.run_ra_dit_llama(stopped)  # stage 0, then 1 retriever step: no refit, no reader on a partial retriever
    assert ck == tmp_path / "stopped/retriever/checkpoint"
    assert json.loads((ck / "trainer_state.json").read_text())["step"] == 1
    assert (tmp_path / "stopped/stage0/projection-warmup.safetensors").exists()
    assert not (tmp_path / "stopped/reader").exists() and not (tmp_path / "stopped/retriever/checkpoint-refit").exists()
    resumed = ra.run_ra_dit_llama(t.config("full", sets, out=str(tmp_path / "stopped")))
    whole = ra.run_ra_dit_llama(t.config("full", sets, out=str(tmp_path / "whole")))
    for part in ("reader/checkpoint/model.safetensors", "reader/checkpoint/retriever/model.safetensors",
                 "retriever/checkpoint-refit/model.safetensors"):
        a, b = load_file(tmp_path / "stopped" / part), load_file(tmp_path / "whole" / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    meta = json.loads((resumed / "retriever/retriever.json").read_text())
    assert meta["kind"] == "lm-slice" and whole == tmp_path / "whole/reader/checkpoint"
    refit = load_file(tmp_path / "whole/retriever/checkpoint-refit/model.safetensors")
    trained = load_file(tmp_path / "whole/retriever/checkpoint/model.safetensors")
    changed = {k for k in refit if not torch.equal(refit[k], trained[k])}
    assert changed == {"model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"}


def test_slice_stage0_is_imprags_stage0_on_the_same_layers(tmp_path):
    """The like-for-like check: ImpRAG's bottom layers with the prompt at offset 0 compute the slice's features,
    and the shared fit then takes the same steps (loss logs equal to rounding)."""
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag_bench.imprag.projection_warmup import features, fit_projections

    lm, tok, enc = slice_encoder()
    imp = ImpRAGModel(lm, tok, ImpRAGConfig(b=1, t=2, l_max=32))
    prompts, _ = fit_inputs(items())
    xq, xp = features(imp, prompts, CORPUS.texts, 0, False)
    sq, sp = slice_features(enc, prompts, CORPUS.texts, False)
    assert torch.allclose(xq, sq, atol=1e-4) and torch.allclose(xp, sp, atol=1e-4)
    cfg = ProjectionFitConfig(steps=5, lr=1e-2, batch_size=2, bf16=False)
    mine = fit_projections(imp, xq, xp, [[0, 1], [3]], cfg, SCALE)
    fit_slice(enc, items(), CORPUS.ids, CORPUS.texts, cfg, tmp_path / "s0", SCALE)
    theirs = [json.loads(x) for x in (tmp_path / "s0/projection-warmup-log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in mine] == pytest.approx([r["loss"] for r in theirs], abs=1e-3)
