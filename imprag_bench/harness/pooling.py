"""The pooling ablation axis of the LM-layer retrievers (ImpRAG and RA-DIT-Llama alike): how layer b's q/k
states become one query vector and one passage vector. Never the default of a paper recipe.

- `pooling: last` (the paper): the last real token's pre-RoPE query / key at layer b.
- `pooling: mean`: the mean over the real tokens of those states (prompt tokens for the query, passage
  tokens for the key). q_proj and k_proj are affine, so the mean state is the projection of the mean of
  layer b's normalised inputs: both retrievers pool the features and project once.
- `centre: true` (evaluation only): subtract the corpus mean key from every passage vector and the corpus
  mean query from every query vector. Both means are the projections (k_proj; q_proj + GQA group mean) of
  the mean layer-b feature over an evenly spaced sample of CENTRE_SAMPLE passages, so one query's ranking
  never depends on the other queries of a run. Subtracting the mean key shifts a query's scores by a
  constant (its ranking is unchanged); subtracting the mean query removes the per-passage bias
  -mu_q . E_p that lets one passage be every query's top hit.

`describe` is the string the index bindings and manifests record.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.options import Option

POOLINGS = ("last", "mean")
CENTRE_SAMPLE = 2048  # passages behind the corpus mean feature

POOLING_OPTION = Option(str, None, "pool layer b's q/k states over the 'last' token (the paper) or the 'mean' "
                        "of the real tokens; default: what the retriever was trained with (an ablation axis)",
                        choices=POOLINGS)
CENTRE_OPTION = Option(bool, False, "subtract the corpus mean key and mean query from the retrieval vectors "
                       "(harness.pooling; an ablation axis, never a paper default)")


def check(pooling: str, where: str) -> str:
    """`pooling` if it is one of POOLINGS, else one UserError naming `where`."""
    if pooling not in POOLINGS:
        raise UserError(f"{where}: pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    return pooling


def pool_tokens(x: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """[n, T, D] states -> [n, D]: the last real token's (left or right padding) or the mean of the real
    tokens' (`mask` [n, T], true on real tokens)."""
    if pooling == "last":
        last = mask.shape[1] - 1 - mask.flip(-1).long().argmax(-1)
        return x[torch.arange(x.shape[0], device=x.device), last]
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1)


def describe(pooling: str, centre: bool) -> str:
    """The binding string of a pooling setting ("last" for the paper; "mean+centre" and so on)."""
    return pooling + ("+centre" if centre else "")


def sample_rows(n: int, size: int = CENTRE_SAMPLE) -> list[int]:
    """An evenly spaced, deterministic sample of at most `size` of the rows 0..n-1."""
    if n <= size:
        return list(range(n))
    return np.linspace(0, n - 1, size).round().astype(int).tolist()


@torch.no_grad()
def centre_vectors(mean_feature: np.ndarray, q_proj, k_proj, group_mean) -> tuple[np.ndarray, np.ndarray]:
    """(mean query [d], mean key [d]) float32: layer b's projections of the corpus mean feature [hidden]."""
    w = q_proj.weight
    x = torch.as_tensor(mean_feature, dtype=w.dtype, device=w.device)[None]
    mu_q = group_mean(q_proj(x))[0]
    mu_k = k_proj(x)[0]
    return mu_q.float().cpu().numpy(), mu_k.float().cpu().numpy()


def corpus_mean_feature(where, corpus, encode_features, binding: dict, desc: str) -> np.ndarray:
    """The mean layer-b feature [hidden] over `sample_rows` of the corpus, its vectors cached in `where` as an
    index bound to `binding` (rebuilt, never trusted, when the model, layer, pooling or corpus differ).
    `encode_features(texts) -> float32 [n, hidden]`."""
    from imprag_bench.harness.index import build_index

    rows = sample_rows(len(corpus.ids))
    texts = corpus.texts
    index = build_index(where, [corpus.ids[i] for i in rows],
                        lambda s, e: encode_features([texts[i] for i in rows[s:e]]),
                        {**binding, "kind": f"{binding.get('kind', '')}-centre-features",
                         "sample": len(rows)}, factory="Flat", desc=desc)
    return index.index.reconstruct_n(0, index.index.ntotal).astype(np.float64).mean(0).astype(np.float32)


def corpus_centring(where, corpus, encode_features, binding: dict, projections, group_mean, desc: str):
    """`centre`'s vectors for one retriever: (mean query [d], mean key [d], `binding` plus the mean key's
    digest), from `corpus_mean_feature` (cached in `where`) and layer b's (q_proj, k_proj) `projections`."""
    import hashlib

    feature = corpus_mean_feature(where, corpus, encode_features, binding, desc)
    mu_q, mu_k = centre_vectors(feature, *projections, group_mean)
    return mu_q, mu_k, {**binding, "centre": hashlib.sha256(mu_k.tobytes()).hexdigest()}
