"""The losses against values computed by hand on tiny worked examples."""
import math

import torch

from imprag_bench.harness.training.losses import (corpus_nce, distillation_kl, distillation_kl_sum, multilabel_nce,
                                                  multilabel_nce_sum, target_logliks)


def test_multilabel_nce_worked_example():
    # One query, candidates: p1 (s=2), p2 (s=1) positive; n1 (s=0), n2 (s=-1) negative.
    s = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    pos = torch.tensor([[True, True, False, False]])
    neg = ~pos
    negsum = math.exp(0) + math.exp(-1)
    want = -(math.log(math.exp(2) / (math.exp(2) + negsum)) + math.log(math.exp(1) / (math.exp(1) + negsum)))
    assert abs(multilabel_nce(s, pos, neg).item() - want) < 1e-6  # by hand: 0.169846 + 0.407605
    assert abs(want - 0.577451) < 1e-5
    # scale multiplies the scores before the softmax terms
    want_half = -(math.log(math.exp(1) / (math.exp(1) + 1 + math.exp(-0.5)))
                  + math.log(math.exp(0.5) / (math.exp(0.5) + 1 + math.exp(-0.5))))
    assert abs(multilabel_nce(s, pos, neg, scale=0.5).item() - want_half) < 1e-6


def test_multilabel_nce_positives_do_not_compete_and_masked_candidates_are_ignored():
    s = torch.tensor([[3.0, 3.0, 0.0, 50.0]])
    pos = torch.tensor([[True, True, False, False]])
    neg = torch.tensor([[False, False, True, False]])  # the 4th candidate belongs to no set
    per = -math.log(math.exp(3) / (math.exp(3) + 1))
    assert abs(multilabel_nce(s, pos, neg).item() - 2 * per) < 1e-6


def test_corpus_nce_takes_every_non_positive_column_as_a_negative():
    # row 0: positive column 1 against columns 0 and 2; row 1: positives 0 and 2 each against column 1
    s = torch.tensor([[1.0, 2.0, 0.0], [0.5, 1.0, -1.0]])
    lse = lambda *xs: math.log(sum(math.exp(x) for x in xs))  # noqa: E731
    row0 = -(2.0 - lse(2.0, 1.0, 0.0))
    row1 = -(0.5 - lse(0.5, 1.0)) - (-1.0 - lse(-1.0, 1.0))
    assert abs(corpus_nce(s, [[1], [0, 2]]).item() - (row0 + row1) / 2) < 1e-6
    assert abs(corpus_nce(2 * s, [[1], [0, 2]], scale=0.5).item() - (row0 + row1) / 2) < 1e-6


def test_distillation_kl_worked_example_and_no_gradient_to_target():
    scores = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    loglik = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True]])
    pt = [math.exp(-1 - k) for k in range(3)]
    zt = sum(pt)
    pt = [x / zt for x in pt]  # 0.665241, 0.244728, 0.090031
    pr = [math.e / (math.e + 2), 1 / (math.e + 2), 1 / (math.e + 2)]  # 0.576117, 0.211942, 0.211942
    want = sum(t * math.log(t / r) for t, r in zip(pt, pr))
    loss = distillation_kl(scores, loglik, mask)
    assert abs(loss.item() - want) < 1e-6
    assert abs(want - 0.05381) < 1e-4  # by hand: 0.095688 + 0.035202 - 0.077080
    loss.backward()
    assert loglik.grad is None  # stop-gradient through P_T
    # d KL / d s = P_R - P_T (tau_r = 1)
    assert torch.allclose(scores.grad, torch.tensor([[pr[i] - pt[i] for i in range(3)]]), atol=1e-6)


def test_distillation_kl_temperatures_and_mask():
    scores = torch.tensor([[2.0, 0.0, 99.0]])
    loglik = torch.tensor([[0.0, -2.0, 99.0]])
    mask = torch.tensor([[True, True, False]])
    # tau_r = 2 -> P_R = softmax(1, 0); tau_t = 2 -> P_T = softmax(0, -1)
    pr = [math.e / (math.e + 1), 1 / (math.e + 1)]
    pt = [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))]
    want = sum(t * math.log(t / r) for t, r in zip(pt, pr))
    got = distillation_kl(scores, loglik, mask, tau_r=2.0, tau_t=2.0).item()
    assert abs(got - want) < 1e-6


def test_target_logliks_on_response_tokens_only():
    # vocab 3; the "hidden state" is the log-probability row itself and the head is the identity.
    rows = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [1 / 3, 1 / 3, 1 / 3]]]))
    head = torch.nn.Identity()
    labels = torch.tensor([[-100, -100, 1]])  # position 1 predicts token 1 with p = 0.6
    ll, n = target_logliks(rows, head, labels)
    assert n == 1 and abs(ll.item() - math.log(0.6)) < 1e-6
    labels2 = torch.tensor([[-100, 2, 1]])  # plus position 0 predicting token 2 with p = 0.5
    ll, n = target_logliks(rows, head, labels2)
    assert n == 2 and abs(ll.item() - (math.log(0.5) + math.log(0.6))) < 1e-6


def test_target_logliks_chunked_equal_full_logits_with_the_same_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 5, requires_grad=True)
    head = torch.nn.Linear(5, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :4] = -100
    labels[2, 6] = -100
    full = torch.log_softmax(head(hidden)[:, :-1], -1).gather(-1, labels[:, 1:].clamp_min(0)[..., None])[..., 0]
    want = (full * (labels[:, 1:] != -100)).sum(-1)
    got, n = target_logliks(hidden, head, labels, chunk=2)  # several chunks, recomputed in backward
    assert n == int((labels[:, 1:] != -100).sum()) and torch.allclose(got, want, atol=1e-6)
    g_want = torch.autograd.grad(want.sum(), [hidden, head.weight])
    g_got = torch.autograd.grad(got.sum(), [hidden, head.weight])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_want, g_got))


def test_sum_forms_are_the_means_times_their_counts():
    s = torch.tensor([[2.0, 1.0, 0.0], [0.5, -1.0, 1.0], [0.0, 0.0, 0.0]])
    pos = torch.tensor([[True, False, False], [False, True, False], [False, False, False]])  # row 3: none
    total, count = multilabel_nce_sum(s, pos, ~pos)
    assert count == 2 and torch.allclose(total / count, multilabel_nce(s, pos, ~pos))
    ll = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -4.0], [-1.0, -1.0, -1.0]])
    mask = torch.ones_like(pos)
    total, count = distillation_kl_sum(s, ll, mask)
    assert count == 3 and torch.allclose(total / 3, distillation_kl(s, ll, mask))
