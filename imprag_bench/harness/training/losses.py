"""The training losses of ImpRAG (paper section 4), shared with the trained explicit-query baselines.

J = J_gen + lambda * J_ret, with J_ret the multi-label NCE of the warmup (Eq. 3) or the self-distillation
KL of the later epochs (Eqs. 4-6). Scores and masks are [queries, candidates]: each query's candidates
are its pseudo-positives, its hard negatives and the other queries' candidates (in-batch negatives).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def multilabel_nce(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   scale: float = 1.0) -> torch.Tensor:
    """Eq. 3: each positive is contrasted with the negatives only (positives do not compete).

    loss(q) = - sum_{p in P(q)} log( e^{s_p} / (e^{s_p} + sum_{n in N(q)} e^{s_n}) ), s = scale * score;
    returned as the mean over queries that have at least one positive. `positive`/`negative` are bool
    masks of the same shape as `scores`.
    """
    s = scores * scale
    neg_lse = torch.logsumexp(s.masked_fill(~negative, NEG_INF), dim=-1, keepdim=True)  # [B, 1]
    per_pos = -(s - torch.logaddexp(s, neg_lse))  # -log sigma-like term for every candidate
    per_query = (per_pos * positive).sum(-1)
    has_pos = positive.any(-1)
    return per_query[has_pos].mean() if has_pos.any() else scores.sum() * 0.0


def corpus_nce(scores: torch.Tensor, positives: list[list[int]], scale: float = 1.0) -> torch.Tensor:
    """Eq. 3 with every column that is not a positive as a negative: `scores` [B, n] (e.g. against a whole
    corpus), `positives[r]` the positive columns of row r."""
    pos = torch.zeros_like(scores, dtype=torch.bool)
    for r, cols in enumerate(positives):
        pos[r, cols] = True
    return multilabel_nce(scores, pos, ~pos, scale=scale)


def distillation_kl(scores: torch.Tensor, lm_loglik: torch.Tensor, mask: torch.Tensor,
                    tau_r: float = 1.0, tau_t: float = 1.0, score_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eqs. 4-6: KL(P_T || P_R) over each query's candidates, mean over queries.

    P_T = softmax(log P_LM(r | p, q) / tau_t) is a target: no gradient flows into `lm_loglik`.
    P_R = softmax(s(q, p) / tau_r). `mask` marks the candidates of each query (others are ignored).
    `score_mask` (a superset of `mask`, default `mask`) widens P_R's normaliser to candidates whose LM
    likelihood was not computed; they get P_T = 0 (unrelated in-batch / random passages).
    """
    score_mask = mask if score_mask is None else score_mask | mask
    target = F.softmax(lm_loglik.detach().masked_fill(~mask, NEG_INF) / tau_t, dim=-1)
    log_r = F.log_softmax(scores.masked_fill(~score_mask, NEG_INF) / tau_r, dim=-1)
    log_t = torch.log(target.clamp_min(1e-30))
    kl = torch.where(mask, target * (log_t - log_r), torch.zeros_like(target)).sum(-1)
    return kl.mean()


def generation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Causal-LM loss on the response tokens: logits[:, i] predicts labels[:, i + 1]; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=ignore_index)


def sequence_loglik(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Sum of log P(label token) over the response tokens of each sequence: [B] (used for P_T)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    tgt = labels[:, 1:]
    keep = tgt != ignore_index
    tok = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (tok * keep).sum(-1)


def score_scale(value: float | str, head_dim: int) -> float:
    """The factor retrieval scores get in the losses (ImpRAG's and RA-DIT-Llama's): a number, or "1/sqrt(head_dim)" (the attention's own)."""
    if value == "1/sqrt(head_dim)":
        return head_dim ** -0.5
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"score_scale={value!r}: expected a positive number or '1/sqrt(head_dim)'")
