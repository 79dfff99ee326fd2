"""ImpRAG's training objective on a tiny random model: each loss composition against a hand computation,
no gradient through the distillation target, in-batch negatives, checkpoints loadable by the harness."""
import math

import pytest
import torch

from imprag_bench.harness.training.candidates import Candidates
from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel, pad
from imprag_bench.harness.training.data import target_text
from imprag_bench.harness.training.loop import warmup_steps
from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig
from tests.tiny import byte_tokenizer, tiny_llama
from imprag_bench.harness.training.mix import TrainItem

TEXTS = {f"p{i}": f"Title {i}\npassage {i} says the answer is a{i % 4}" for i in range(12)}


def texts(ids):
    return [TEXTS[i] for i in ids]


def make(**kw) -> ImpRAGObjective:
    torch.manual_seed(0)
    model = ImpRAGModel(tiny_llama(), byte_tokenizer(), ImpRAGConfig(l_max=32))
    return ImpRAGObjective(model, texts, ObjectiveConfig(**kw), negative_pool=list(TEXTS))


def items():
    # p1 is a positive of q0 and a hard negative of q1: it must stay a positive (never a negative) for q0.
    return [TrainItem("r0", "retrieval", "Q: zero? A:", "a0", Candidates(("p0", "p1"), ("p2",))),
            TrainItem("r1", "retrieval", "Q: one? A:", "a1", Candidates(("p3",), ("p1", "p4")))]


def raw_scores(obj, its, ids):
    m = obj.model
    pi, pm = pad(m.index_tokens(texts(ids)), m.pad_id, "right")
    qi, qm = m.prompt_batch([it.prompt for it in its])
    return m.score(m.query_embeddings(qi, qm, obj.cfg.query_k * m.cfg.l_max), m.passage_embeddings(pi, pm))


def test_candidate_masks_in_batch_negatives_exclude_own_positives():
    obj = make()
    scores, ids, pos, neg = obj.candidate_scores(items())
    assert ids == ["p0", "p1", "p2", "p3", "p4"]  # each passage once, though p1 comes from two queries
    assert pos.tolist() == [[True, True, False, False, False], [False, False, False, True, False]]
    assert neg.tolist() == [[False, False, True, True, True], [True, True, True, False, True]]
    assert not (pos & neg).any()
    assert torch.allclose(scores, raw_scores(obj, items(), ids), atol=1e-5)


def test_warmup_loss_equals_hand_computed_nce():
    obj = make(score_scale=0.5)
    with torch.no_grad():
        s = (0.5 * raw_scores(obj, items(), ["p0", "p1", "p2", "p3", "p4"])).tolist()
        got = obj.retrieval_loss(items(), "warmup").item()
    neg0 = sum(math.exp(x) for x in s[0][2:])
    l0 = -sum(math.log(math.exp(s[0][j]) / (math.exp(s[0][j]) + neg0)) for j in (0, 1))
    neg1 = sum(math.exp(s[1][j]) for j in (0, 1, 2, 4))
    l1 = -math.log(math.exp(s[1][3]) / (math.exp(s[1][3]) + neg1))
    assert abs(got - (l0 + l1) / 2) < 1e-4


def test_distillation_loss_equals_hand_computed_kl_over_own_candidates():
    obj = make(score_scale=0.5, tau_t=2.0, distill_over="own", teacher_over="own")  # tau_r = 1/score_scale = 2
    its = items()
    m = obj.model
    with torch.no_grad():
        s = raw_scores(obj, its, ["p0", "p1", "p2", "p3", "p4"]).tolist()
        got = obj.retrieval_loss(its, "distill").item()
        own = [["p0", "p1", "p2"], ["p3", "p1", "p4"]]
        col = {"p0": 0, "p1": 1, "p2": 2, "p3": 3, "p4": 4}
        total = 0.0
        for i, it in enumerate(its):
            ll = [m.target_loglik([it.prompt], [target_text(it.target)], [[TEXTS[p]]]).item() for p in own[i]]
            zt = sum(math.exp(x / 2.0) for x in ll)
            pt = [math.exp(x / 2.0) / zt for x in ll]
            zr = sum(math.exp(s[i][col[p]] / 2.0) for p in own[i])
            pr = [math.exp(s[i][col[p]] / 2.0) / zr for p in own[i]]
            total += sum(t * math.log(t / r) for t, r in zip(pt, pr))
    assert abs(got - total / 2) < 1e-4


def test_distillation_over_all_of_c_gives_zero_target_mass_to_unscored_candidates():
    obj = make(score_scale=0.5, tau_t=2.0, distill_over="all", teacher_over="own")
    its = items()
    m = obj.model
    ids = ["p0", "p1", "p2", "p3", "p4"]
    with torch.no_grad():
        s = raw_scores(obj, its, ids).tolist()
        got = obj.retrieval_loss(its, "distill").item()
        own = [["p0", "p1", "p2"], ["p3", "p1", "p4"]]
        total = 0.0
        for i, it in enumerate(its):
            ll = [m.target_loglik([it.prompt], [target_text(it.target)], [[TEXTS[p]]]).item() for p in own[i]]
            zt = sum(math.exp(x / 2.0) for x in ll)
            zr = sum(math.exp(x / 2.0) for x in s[i])  # P_R over all five columns of C
            for p, x in zip(own[i], ll):
                t, r = math.exp(x / 2.0) / zt, math.exp(s[i][ids.index(p)] / 2.0) / zr
                total += t * math.log(t / r)
    assert abs(got - total / 2) < 1e-4


def test_paper_distillation_scores_every_candidate_of_c_with_the_teacher():
    """Eqs. 4-6 as the paper applies them: P_T and P_R both over all of C (own P u N_h and the in-batch
    negatives), every candidate scored by the LM alone; no score scale (Eq. 3/5 have none)."""
    obj = make(tau_t=2.0)
    assert obj.cfg.distill_over == obj.cfg.teacher_over == "all" and obj.scale == 1.0 and obj.tau_r == 1.0
    its = items()
    m = obj.model
    ids = ["p0", "p1", "p2", "p3", "p4"]
    with torch.no_grad():
        s = raw_scores(obj, its, ids).tolist()
        got = obj.retrieval_loss(its, "distill").item()
        total = 0.0
        for i, it in enumerate(its):
            ll = [m.target_loglik([it.prompt], [target_text(it.target)], [[TEXTS[p]]]).item() for p in ids]
            zt = sum(math.exp(x / 2.0) for x in ll)
            zr = sum(math.exp(x) for x in s[i])
            for j, x in enumerate(ll):
                t, r = math.exp(x / 2.0) / zt, math.exp(s[i][j]) / zr
                total += t * math.log(t / r)
    assert abs(got - total / 2) < 1e-4


def test_random_negatives_are_extra_negative_columns_never_scored_by_the_teacher():
    from imprag_bench.harness.training.negatives import random_passages
    obj = make(random_negatives=3, seed=1)
    fresh = ["p0", "p1", "p2", "p3", "p4"]
    rnd0 = [p for p in random_passages(list(TEXTS), 3, 1, 0) if p not in fresh]
    scores, ids, pos, neg = obj.candidate_scores(items(), step=0)
    assert ids == fresh + rnd0 and obj.n_fresh == 5
    assert not pos[:, 5:].any() and neg[:, 5:].all()
    assert pos[:, :5].tolist() == [[True, True, False, False, False], [False, False, False, True, False]]
    assert torch.allclose(scores, raw_scores(obj, items(), ids), atol=1e-4)
    rnd1 = random_passages(list(TEXTS), 3, 1, 1)
    assert rnd1 != random_passages(list(TEXTS), 3, 1, 0)  # a new draw every step, the same on every rank
    seen = []
    orig = obj.teacher_loglik
    obj.teacher_loglik = lambda its, cols=None: seen.append(cols) or orig(its, cols)
    obj.retrieval_loss(items(), "distill", step=0)
    assert seen == [fresh]  # the teacher scores C, not the random extras


def test_score_scale_accepts_a_number_or_the_attention_scale():
    from imprag_bench.imprag.objective import score_scale
    assert score_scale(1.0, 64) == 1.0 and score_scale("1/sqrt(head_dim)", 64) == 0.125
    for bad in (0, -1.0, "sqrt", True):
        with pytest.raises(ValueError):
            score_scale(bad, 64)


def test_no_gradient_flows_through_the_teacher():
    obj = make()
    seen = []
    orig = obj.model.target_loglik

    def spy(*a, **k):
        seen.append(torch.is_grad_enabled())
        return orig(*a, **k)
    obj.model.target_loglik = spy
    _, ll = obj.teacher_loglik(items())
    assert seen and not any(seen) and not ll.requires_grad
    loss = obj.retrieval_loss(items(), "distill")
    loss.backward()  # the gradient reaches the retrieval path (layers 0..b) only
    lm = obj.model.lm
    assert lm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert lm.model.layers[obj.model.b + 1].mlp.up_proj.weight.grad is None  # above b: only the teacher reads
    assert lm.lm_head.weight.grad is None


def test_generation_loss_equals_mean_token_nll():
    obj = make(n_read=1)
    m = obj.model
    ret = items()[0]
    inst = TrainItem("d", "denoise", "ctx [START] b a [END] A:", "a b")
    plain = TrainItem("t", "plain", "", "Some plain text.")
    with torch.no_grad():
        nll, n = obj.generation_loss([ret, inst, plain])
        want = -(m.target_loglik([ret.prompt], [target_text(ret.target)], [[TEXTS["p0"]]]).item()
                 + m.target_loglik([inst.prompt], [target_text(inst.target)]).item())
        toks = m.token_ids([plain.target])[0]
        logp = torch.log_softmax(m.forward_logits(torch.tensor([toks]))[0, :-1], -1)
        want -= logp.gather(-1, torch.tensor(toks[1:])[:, None]).sum().item()
    n_want = len(m.token_ids([target_text("a0")])[0]) + len(m.token_ids([target_text("a b")])[0]) + len(toks) - 1
    assert n == n_want
    assert abs(nll.item() - want) < 1e-3
    out = obj.losses([ret, inst, plain], 0, 10)
    assert abs(out["gen"].item() - want / n_want) < 1e-4
    assert abs(out["loss"].item() - (out["gen"] + obj.cfg.lam * out["ret"]).item()) < 1e-5


def test_stage_switch():
    obj = make(warmup_share=0.3)
    assert warmup_steps(0.3, 10) == 3
    assert [obj.stage(s, 10) for s in (0, 2, 3, 9)] == ["warmup", "warmup", "distill", "distill"]


def test_checkpoint_loads_in_the_harness_and_the_system(tmp_path):
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.system import config_from_options

    obj = make()
    with torch.no_grad():
        obj.model.lm.model.layers[0].mlp.up_proj.weight.add_(0.01)
    obj.save(tmp_path)
    hf, _ = load_lm(str(tmp_path))
    for (k, a), b in zip(obj.model.lm.state_dict().items(), hf.state_dict().values()):
        assert torch.equal(a, b), k
    cfg = config_from_options({}, str(tmp_path))
    assert (cfg.b, cfg.t, cfg.l_max) == (obj.model.b, obj.model.t, 32)
    other = make()
    other.load(tmp_path)
    assert torch.equal(other.model.lm.model.layers[0].mlp.up_proj.weight, obj.model.lm.model.layers[0].mlp.up_proj.weight)


def test_gather_candidates_single_process_is_identity():
    from imprag_bench.harness.training.loop import gather_candidates
    e = torch.randn(3, 4, requires_grad=True)
    ids, g = gather_candidates(["a", "b", "c"], e)
    assert ids == ["a", "b", "c"] and g is e


def test_presets_are_typed_seen_tasks_only_and_say_their_recipe():
    from imprag_bench.harness.errors import UserError
    from imprag_bench.harness.registry import TRAINERS
    from imprag_bench.harness.training.config import UNAVOIDABLE
    from imprag_bench.harness.training.data import load_examples
    presets = TRAINERS.get("imprag").presets
    assert set(presets) == {"quick", "full", "paper"}
    for name, p in presets.items():
        assert set(p["tasks"]) <= {"nq", "hotpotqa"}
        forced = set(p.additions) <= set(UNAVOIDABLE)  # the paper recipe names only what the hub forces
        assert (p.recipe == "paper") == forced, name
    paper = presets["paper"]
    assert paper.score_scale == 1.0 and paper.teacher_over == paper.distill_over == "all"
    assert paper.stage0_steps == paper.refit_steps == paper.random_negatives == 0 and paper.retriever_lr_scale == 1
    assert paper.retriever == "facebook/contriever-msmarco" and not paper.answer_positives
    assert {"stage0", "random-negatives"} <= set(presets["quick"].additions)
    with pytest.raises(UserError):
        load_examples(presets["quick"].replace(tasks=["nq", "fever"]))


def test_answer_positives_labels():
    from imprag_bench.harness.training.candidates import pseudo_label_answers
    ranked = [f"p{i}" for i in range(12)]
    body = {p: ("the answer is Paris" if p in ("p3", "p7", "p11") else "nothing here") for p in ranked}
    out = pseudo_label_answers(["q", "r"], [["paris"], ["london"]], lambda qs, k: [ranked[:k]] * len(qs),
                               lambda ids: [body[i] for i in ids], n_pos=2, n_hard=3, hard_from=5, hard_to=12)
    assert out[0].positives == ("p3", "p7")  # answer-containing passages, in rank order
    assert len(out[0].hard_negatives) == 3 and not {"p7", "p11"} & set(out[0].hard_negatives)
    assert out[1].positives == ("p0", "p1")  # no answer anywhere: the plain top-n_pos


def test_stage0_features_project_to_the_embeddings_and_the_fit_is_full_corpus_nce(tmp_path):
    from imprag_bench.harness.training import losses as L
    from imprag_bench.imprag.projection_warmup import ProjectionWarmupConfig, features, fit_projections, run_stage0
    obj = make()
    m = obj.model
    ids = list(TEXTS)
    prompts = [it.prompt for it in items()]
    xq, xp = features(m, prompts, texts(ids), obj.cfg.query_k, False, tmp_path / "cache")
    q_proj, k_proj = m.runner.layer(m.b).self_attn.q_proj, m.runner.layer(m.b).self_attn.k_proj
    with torch.no_grad():  # k_proj(features) is E_p, pooled q_proj(features) is E_q
        assert torch.allclose(k_proj(xp), torch.from_numpy(m.embed_passages(texts(ids))), atol=1e-4)
        assert torch.allclose(m.group_mean(q_proj(xq)), torch.from_numpy(m.embed_queries(prompts, k=3)), atol=1e-4)
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 1
    pos = [[0, 1], [3]]
    with torch.no_grad():
        s = m.score(m.group_mean(q_proj(xq)), k_proj(xp))
        mask = torch.zeros_like(s, dtype=torch.bool)
        mask[0, [0, 1]] = True
        mask[1, 3] = True
        want = L.multilabel_nce(s, mask, ~mask, scale=0.125).item()  # all 12 passages are candidates
    w0 = q_proj.weight.detach().clone()
    logs = fit_projections(m, xq, xp, pos, ProjectionWarmupConfig(steps=3, lr=1e-2, batch_size=2), 0.125)
    assert abs(logs[0]["loss"] - want) < 1e-4 and logs[-1]["loss"] < logs[0]["loss"]
    assert not torch.equal(w0, q_proj.weight)
    fitted = {k: v.clone() for k, v in q_proj.state_dict().items()}
    other = make()  # a fresh model loads the saved fit instead of fitting again
    run_stage0(m, prompts, [["p0", "p1"], ["p3"]], ids, texts(ids), ProjectionWarmupConfig(steps=3), tmp_path,
               3, 0.125, tmp_path / "cache")
    run_stage0(other.model, [], [], [], [], ProjectionWarmupConfig(steps=3), tmp_path, 3, 0.125)
    got = other.model.runner.layer(m.b).self_attn.q_proj.weight
    assert torch.equal(got, m.runner.layer(m.b).self_attn.q_proj.weight) and not torch.equal(got, fitted["weight"])


def test_retrieval_prompts_get_the_evaluation_demonstrations():
    from imprag_bench.harness.prompting import lm_input
    from imprag_bench.harness.registry import TASKS
    from imprag_bench.harness.training.data import with_demonstrations
    exs = TASKS.get("nq").load("minikilt", "train")[:4]
    its = [TrainItem(f"ret:{ex.id}", "retrieval", ex.prompt, ex.target) for ex in exs]
    its.append(TrainItem("d", "denoise", "ctx A:", "x"))
    got = with_demonstrations(its, exs, "minikilt", 2)
    demos = exs[:2]  # the runner's load_demos: the task's first train examples
    assert [it.prompt for it in got[:2]] == [ex.prompt for ex in demos]  # a demonstration is not its own demo
    assert [it.prompt for it in got[2:4]] == [lm_input(ex, demos) for ex in exs[2:4]]
    assert got[2].prompt.endswith(exs[2].prompt) and got[2].prompt != exs[2].prompt
    assert got[4] == its[4] and with_demonstrations(its, exs, "minikilt", 0) == its


def test_projection_fit_saves_a_checkpoint_once_and_respects_skip_if(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from imprag_bench.imprag.train import projection_fit
    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(tmp_path / "cache"))
    obj = make()
    corpus = SimpleNamespace(ids=list(TEXTS), texts=texts(list(TEXTS)))
    cfg = {"stage0_lr": 1e-2, "seed": 0, "bf16": False, "query_k": 3}
    q = obj.model.runner.layer(obj.model.b).self_attn.q_proj
    w0 = q.weight.detach().clone()
    skipped = projection_fit(obj, items(), corpus, cfg, 3, tmp_path / "s0", tmp_path / "ck-s0", skip_if=tmp_path)
    assert not skipped.exists() and (tmp_path / "s0/projection-warmup.safetensors").exists()
    fitted = q.weight.detach().clone()
    assert not torch.equal(w0, fitted)
    dst = projection_fit(obj, items(), corpus, cfg, 3, tmp_path / "refit", tmp_path / "ck-refit")
    assert (dst / "imprag_config.json").exists()
    again = make()  # a rerun loads the saved fit of the same folder instead of fitting from its own weights
    projection_fit(again, items(), corpus, cfg, 3, tmp_path / "refit", tmp_path / "ck-refit")
    assert torch.equal(again.model.runner.layer(again.model.b).self_attn.q_proj.weight, q.weight)


def test_stage0_cosine_schedule_halves_the_second_of_two_adam_steps(tmp_path):
    from imprag_bench.imprag.projection_warmup import ProjectionWarmupConfig, features, fit_projections
    weights = {}
    for steps, cosine in ((1, False), (2, False), (2, True)):
        obj = make()
        m = obj.model
        xq, xp = features(m, [it.prompt for it in items()], texts(list(TEXTS)), 3, False)
        fit_projections(m, xq, xp, [[0, 1], [3]], ProjectionWarmupConfig(steps, 1e-2, batch_size=2, cosine=cosine), 0.125)
        weights[steps, cosine] = m.runner.layer(m.b).self_attn.q_proj.weight.detach().clone()
    one = weights[1, False]  # cosine over 2 steps: lr, then lr * (1 + cos(pi/2)) / 2 = lr / 2
    assert torch.allclose(weights[2, True] - one, 0.5 * (weights[2, False] - one), atol=1e-6)
    assert not torch.equal(weights[2, True], weights[2, False])


def test_every_objective_setting_comes_from_the_training_config():
    from dataclasses import fields

    from imprag_bench.imprag.train import ImpRAGTrainConfig
    assert {f.name for f in fields(ObjectiveConfig)} <= set(ImpRAGTrainConfig.keys())
