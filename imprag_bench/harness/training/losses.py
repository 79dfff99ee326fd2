"""The training losses of ImpRAG (paper section 4), shared with the trained explicit-query baselines.

J = J_gen + lambda * J_ret, with J_ret the multi-label NCE of the warmup (Eq. 3) or the self-distillation
KL of the later epochs (Eqs. 4-6). Scores and masks are [queries, candidates]: each query's candidates
are its pseudo-positives, its hard negatives and the other queries' candidates (in-batch negatives).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

NEG_INF = float("-inf")


def multilabel_nce(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   scale: float = 1.0) -> torch.Tensor:
    """Eq. 3 as the mean over queries with a positive (`multilabel_nce_sum`'s sum / count)."""
    total, count = multilabel_nce_sum(scores, positive, negative, scale)
    return total / count if count else total


def multilabel_nce_sum(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                       scale: float = 1.0) -> tuple[torch.Tensor, int]:
    """Eq. 3: each positive is contrasted with the negatives only (positives do not compete).

    loss(q) = - sum_{p in P(q)} log( e^{s_p} / (e^{s_p} + sum_{n in N(q)} e^{s_n}) ), s = scale * score;
    returned as (sum over the queries that have at least one positive, their number), so that a loop can
    average over a global batch split across ranks. `positive`/`negative` are bool masks of `scores`' shape.
    """
    s = scores * scale
    neg_lse = torch.logsumexp(s.masked_fill(~negative, NEG_INF), dim=-1, keepdim=True)  # [B, 1]
    per_pos = -(s - torch.logaddexp(s, neg_lse))  # -log sigma-like term for every candidate
    per_query = (per_pos * positive).sum(-1)
    has_pos = positive.any(-1)
    return per_query[has_pos].sum() + scores.sum() * 0.0, int(has_pos.sum())


def corpus_nce(scores: torch.Tensor, positives: list[list[int]], scale: float = 1.0) -> torch.Tensor:
    """Eq. 3 with every column that is not a positive as a negative: `scores` [B, n] (e.g. against a whole
    corpus), `positives[r]` the positive columns of row r."""
    pos = torch.zeros_like(scores, dtype=torch.bool)
    for r, cols in enumerate(positives):
        pos[r, cols] = True
    return multilabel_nce(scores, pos, ~pos, scale=scale)


def distillation_kl(scores: torch.Tensor, lm_loglik: torch.Tensor, mask: torch.Tensor,
                    tau_r: float = 1.0, tau_t: float = 1.0, score_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eqs. 4-6 as the mean over queries (`distillation_kl_sum`'s sum / count)."""
    total, count = distillation_kl_sum(scores, lm_loglik, mask, tau_r, tau_t, score_mask)
    return total / max(1, count)


def distillation_kl_sum(scores: torch.Tensor, lm_loglik: torch.Tensor, mask: torch.Tensor, tau_r: float = 1.0,
                        tau_t: float = 1.0, score_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Eqs. 4-6: KL(P_T || P_R) over each query's candidates, as (sum over queries, number of queries).

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
    return kl.sum(), int(kl.shape[0])


def target_logliks(hidden: torch.Tensor, head, labels: torch.Tensor, chunk: int = 1024,
                   ignore_index: int = -100) -> tuple[torch.Tensor, int]:
    """(per-sequence sums [B] of log P(labels[:, i+1] | hidden[:, i]), number of labelled tokens), computing the
    vocabulary projection `head` only at labelled positions, `chunk` rows at a time in fp32 and recomputed in
    backward: a batch never holds its [B, T, V] logits (64 x 2k tokens x 128k vocab is 64 GB in fp32)."""
    keep = labels[:, 1:] != ignore_index
    rows, tgt = hidden[:, :-1][keep], labels[:, 1:][keep]
    parts = []
    for s in range(0, rows.shape[0], chunk):
        h, t = rows[s:s + chunk], tgt[s:s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            parts.append(checkpoint(_row_loglik, head, h, t, use_reentrant=False))
        else:
            parts.append(_row_loglik(head, h, t))
    lp = torch.cat(parts) if parts else hidden.new_zeros((0,), dtype=torch.float32)
    seq = keep.nonzero()[:, 0]
    out = torch.zeros(labels.shape[0], dtype=torch.float32, device=hidden.device).index_add(0, seq, lp)
    return out + hidden.sum() * 0.0, int(keep.sum())


def _row_loglik(head, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(head(h).float(), dim=-1).gather(-1, t[:, None]).squeeze(-1)


def score_scale(value: float | str, head_dim: int) -> float:
    """The factor retrieval scores get in the losses (ImpRAG's and RA-DIT-Llama's): a number, or "1/sqrt(head_dim)" (the attention's own)."""
    if value == "1/sqrt(head_dim)":
        return head_dim ** -0.5
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"score_scale={value!r}: expected a positive number or '1/sqrt(head_dim)'")
