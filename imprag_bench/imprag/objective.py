"""ImpRAG's training objective (paper section 4): J = J_gen + lambda * J_ret on one set of weights.

Retrieval items (seen tasks, with pseudo-labelled `Candidates`):
- J_ret scores the query embedding E_q (layer b, with gradient) against candidate passage embeddings E_p
  (layer b, with full gradient through the passages: stop-grad was clearly worse in
  docs/warmup-feasibility.md). Candidates of a query = its own positives P + own hard negatives N_h + the
  other queries' candidates of the global batch (in-batch negatives, gathered across ranks). A passage id in
  P(q) is never a negative of q; a passage id that occurs twice in the gathered set counts once.
  * warmup (the first `warmup_share` of the steps; paper: 3 of 10 epochs): multi-label NCE (Eq. 3) on
    scores * `score_scale`.
  * then self-distillation (Eqs. 4-6): P_T = softmax(log P_LM(r | p, q) / tau_t), each candidate read alone
    through the middle layers under no_grad; P_R = softmax(s / tau_r); J_ret = KL(P_T || P_R). The paper
    builds C "as in warmup": `teacher_over="all"` scores every candidate of C with the LM (own P u N_h and
    the in-batch negatives), `distill_over="all"` normalises P_R over all of C (both the defaults). The CPU
    presets use `teacher_over="own"`: only q's own P u N_h are scored, P_T = 0 on the rest of C.
- Extra negatives (harness.training.negatives, off by default): `random_negatives` corpus passages per step
  (the CPU presets use 16), stop-grad, appended as negative columns, so that passages outside the queries'
  neighbourhoods are pushed down too. They are never scored by the teacher (P_T = 0 there).
- J_gen: LM loss on " target\n" given the prompt reading `n_read` of its own candidates (positives first)
  as prefix KV in layers b..t.
Instruction items (reading / denoise / sentgen): J_gen without passages; plain items: LM loss on the text.
J_gen is the mean over all target tokens of the batch.

Lockstep (under torchrun): the engine shards ImpRAG one FSDP2 unit per decoder layer, and each call of a layer
all-gathers its weights (and, in backward, reduce-scatters its gradients), so every rank must call every layer
the same number of times in the same order whatever its micro-batch holds. With `lockstep` each micro-batch
runs a fixed sequence of passes (reading KV, the reading and the closed-book J_gen forwards, candidate passages,
queries, random negatives, and the teacher's chunks, their count the maximum over ranks: harness.dist.global_max);
a rank with nothing for a pass runs it on a one-token stand-in whose output enters the loss times 0 (so the
result is unchanged).

Score scale: Eq. 3 has none (`score_scale=1`, the default). Raw dot products of SmolLM2's layer-8 q/k are
~|12| at init; the CPU presets use "1/sqrt(head_dim)" (the scale the model's own attention uses), which made
the first NCE losses sane in the feasibility run. tau_r defaults to 1/score_scale so that P_R in the
distillation stage lives on the scale of the warmup.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from imprag_bench.harness.training import losses as L
from imprag_bench.imprag.model import ImpRAGModel, pad
from imprag_bench.harness.training.negatives import random_passages
from imprag_bench.harness.training.data import target_text
from imprag_bench.harness.dist import global_max
from imprag_bench.harness.training.loop import gather_candidates, global_mean, warmup_steps, world
from imprag_bench.harness.training.losses import score_scale

CONFIG_FILE = "imprag_config.json"
STAND_IN = "."  # the one-token input of a pass a rank has nothing for (lockstep)


@dataclass
class ObjectiveConfig:
    """Loss settings (defaults documented in the module docstring and in imprag_bench/imprag/train.py's presets)."""

    lam: float = 1.0  # weight of J_ret
    warmup_share: float = 0.3  # share of steps with the NCE loss (paper: 3 of 10 epochs)
    score_scale: float | str = 1.0  # Eq. 3: none; "1/sqrt(head_dim)": the attention's own scale
    tau_r: float | None = None  # None -> 1/score_scale
    tau_t: float = 1.0  # Eq. 4 as written: P_T is the posterior over candidates under a uniform prior
    n_read: int = 2  # own candidates read in J_gen (positives first); 0 = closed-book J_gen
    max_prompt_tokens: int = 192  # instruction prompts are cut on the left (the question stays)
    max_target_tokens: int = 48  # targets / plain text are cut on the right
    query_k: int = 3  # the query is embedded at positions k*l_max, as at inference with k passages
    bf16: bool = False  # bf16 autocast (3x faster on AMX CPUs; same vectors to cos 0.99999)
    gen_weight: float = 1.0  # weight of J_gen (0 -> retrieval-only training, for ablations)
    random_negatives: int = 0  # random corpus passages per step added as (stop-grad) negatives
    distill_over: str = "all"  # P_R normaliser in self-distillation: "all" of C (+ extras), or "own" P u N_h
    teacher_over: str = "all"  # LM likelihoods for "all" of C (the paper), or each query's "own" P u N_h
    seed: int = 0  # random negatives are a function of (seed, step)
    retriever_lr_scale: float = 1.0  # lr multiplier of what E_q/E_p are computed by (layers 0..b-1, layer b's
    # norm, q_proj, k_proj); the paper trains everything at one lr (1.0)


class ImpRAGObjective:
    """The `imprag_bench.harness.training.loop.Objective` of ImpRAG. `passage_text(ids) -> texts` as the index embeds them."""

    def __init__(self, model: ImpRAGModel, passage_text, config: ObjectiveConfig | None = None,
                 negative_pool: list[str] | None = None):
        self.model = model
        self.passage_text = passage_text
        self.cfg = config or ObjectiveConfig()
        for key in ("distill_over", "teacher_over"):
            if getattr(self.cfg, key) not in ("own", "all"):
                raise ValueError(f"{key}: expected 'own' or 'all', got {getattr(self.cfg, key)!r}")
        if self.cfg.teacher_over == "all" and self.cfg.distill_over == "own":
            raise ValueError("teacher_over='all' needs distill_over='all' (P_T and P_R over the same C)")
        if self.cfg.random_negatives and not negative_pool:
            raise ValueError("random_negatives needs a negative_pool (the corpus passage ids)")
        self.scale = score_scale(self.cfg.score_scale, model.runner.head_dim)
        self.tau_r = self.cfg.tau_r or 1.0 / self.scale
        self.negative_pool = list(negative_pool or [])
        self.lockstep: bool | None = None  # None: on under torchrun (module docstring)

    fsdp_units = "layer"  # one FSDP2 unit per decoder layer; `lockstep` makes the layer calls data-independent

    def _lockstep(self) -> bool:
        return world()[1] > 1 if self.lockstep is None else self.lockstep

    def module(self) -> torch.nn.Module:
        """What training updates: the whole LM."""
        return self.model.lm

    @property
    def device(self) -> torch.device:
        return self.model.device

    def parameters(self):
        return self.model.lm.parameters()

    def lr_scales(self) -> dict[int, float]:
        """id(parameter) -> lr multiplier for the trainer: `retriever_lr_scale` on the retriever's own weights
        (layers 0..b-1 and layer b's input norm, q_proj, k_proj; not the embeddings, which the LM head shares)."""
        if self.cfg.retriever_lr_scale == 1.0:
            return {}
        r, b = self.model.runner, self.model.b
        attn = r.layer(b).self_attn
        mods = [r.layer(i) for i in range(b)] + [r.layer(b).input_layernorm, attn.q_proj, attn.k_proj]
        return {id(p): self.cfg.retriever_lr_scale for m in mods for p in m.parameters()}

    def stage(self, step: int, total_steps: int) -> str:
        """'warmup' for the first ceil(warmup_share * total) steps, then 'distill'."""
        return "warmup" if step < warmup_steps(self.cfg.warmup_share, total_steps) else "distill"

    def _autocast(self):
        return torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16)

    # ---- retrieval ---------------------------------------------------------------------------------
    def _embed_passages(self, pids: list[str]) -> Tensor:
        m = self.model
        stand_in = not pids and self._lockstep()
        ids, mask = pad(m.index_tokens([STAND_IN] if stand_in else self.passage_text(pids)), m.pad_id, "right")
        with self._autocast():  # bf16 for the layers; scores and losses below in fp32
            e = m.passage_embeddings(ids.to(m.device), mask.to(m.device)).float()
        return e[:0] if stand_in else e

    def _random_negatives(self, fresh: list[str], step: int) -> tuple[list[str], Tensor]:
        """(ids, embeddings) of this step's random corpus passages, stop-grad, none among `fresh`."""
        taken = set(fresh)
        rnd = [p for p in random_passages(self.negative_pool, self.cfg.random_negatives, self.cfg.seed, step)
               if p not in taken]
        with torch.no_grad():
            e_rnd = self._embed_passages(rnd) if rnd else torch.zeros((0, self.model.dim), device=self.model.device)
        return rnd, e_rnd

    def candidate_scores(self, items: list, step: int = 0, extras: bool = True
                         ) -> tuple[Tensor, list[str], Tensor, Tensor]:
        """Scores [n_q, n_c] of the local queries against C: the gathered, de-duplicated candidates (own P u N_h
        and the in-batch ones), then (if `extras` and configured) the random negatives; with the column ids and
        bool masks positive/negative [n_q, n_c]: own P; every column whose id is not in own P."""
        m = self.model
        local: list[str] = []
        for it in items:
            for pid in (*it.candidates.positives, *it.candidates.hard_negatives):
                if pid not in local:
                    local.append(pid)
        e_p = self._embed_passages(local)
        all_ids, e_all = gather_candidates(local, e_p)
        first = {}
        for j, pid in enumerate(all_ids):
            first.setdefault(pid, j)
        keep = sorted(first.values())
        all_ids, e_all = [all_ids[j] for j in keep], e_all[keep]
        stand_in = not items and self._lockstep()
        q_ids, q_mask = m.prompt_batch([STAND_IN] if stand_in else [it.prompt for it in items])
        with self._autocast():
            e_q = m.query_embeddings(q_ids, q_mask, self.cfg.query_k * m.cfg.l_max).float()
        e_q = e_q[:0] if stand_in else e_q
        positive = torch.tensor([[pid in set(it.candidates.positives) for pid in all_ids] for it in items],
                                dtype=torch.bool, device=e_q.device).reshape(len(items), len(all_ids))
        scores, negative = m.score(e_q, e_all), ~positive
        self.n_fresh = len(all_ids)  # columns before the random extras (read by retrieval_loss)
        if extras and self.cfg.random_negatives > 0:  # never an own positive: those are fresh candidates
            x_ids, x_emb = self._random_negatives(all_ids, step)
            if x_ids:
                x_neg = torch.ones((len(items), len(x_ids)), dtype=torch.bool, device=e_q.device)
                scores = torch.cat([scores, m.score(e_q, x_emb.to(e_q.dtype))], 1)
                positive = torch.cat([positive, ~x_neg], 1)
                negative = torch.cat([negative, x_neg], 1)
                all_ids = all_ids + x_ids
        return scores, all_ids, positive, negative

    @torch.no_grad()
    def teacher_loglik(self, items: list, columns: list[str] | None = None) -> tuple[list[list[str]], Tensor]:
        """log P_LM(target | prompt, one candidate) for each item's own P u N_h, or for every id of `columns`
        (all of C): (ids per item, [n_q, c_max] padded with -inf). No gradient: the target is stop-grad (Eq. 6)."""
        if columns is None:
            cands = [list(dict.fromkeys((*it.candidates.positives, *it.candidates.hard_negatives))) for it in items]
        else:
            cands = [list(columns) for _ in items]
        width = max((len(c) for c in cands), default=0)
        out = torch.full((len(items), width), float("-inf"))
        pairs = [(i, j) for i, c in enumerate(cands) for j in range(len(c))]
        chunk = 32
        n_chunks = -(-len(pairs) // chunk)
        for s in range(0, chunk * (global_max(n_chunks) if self._lockstep() else n_chunks), chunk):
            part = pairs[s:s + chunk]
            if not part:  # lockstep: another rank has more chunks
                with self._autocast():
                    self.model.target_loglik([STAND_IN], [STAND_IN], [[STAND_IN]])
                continue
            with self._autocast():
                ll = self.model.target_loglik([items[i].prompt for i, _ in part],
                                              [target_text(items[i].target) for i, _ in part],
                                              [self.passage_text([cands[i][j]]) for i, j in part])
            for (i, j), v in zip(part, ll.float().cpu()):
                out[i, j] = v
        return cands, out

    def retrieval_loss(self, items: list, stage: str, step: int = 0) -> Tensor:
        extras = stage == "warmup" or self.cfg.distill_over == "all"
        scores, all_ids, positive, negative = self.candidate_scores(items, step, extras=extras)
        if stage == "warmup":
            return global_mean(*L.multilabel_nce_sum(scores, positive, negative, scale=self.scale))
        fresh = all_ids[:self.n_fresh]  # C without the random extras
        cands, ll = self.teacher_loglik(items, fresh if self.cfg.teacher_over == "all" else None)
        col = {pid: j for j, pid in enumerate(all_ids)}
        target = torch.full_like(scores, float("-inf"))
        for i, c in enumerate(cands):
            for j, pid in enumerate(c):
                target[i, col[pid]] = ll[i, j]
        own = torch.isfinite(target)
        return global_mean(*L.distillation_kl_sum(scores, target, own, tau_r=self.tau_r, tau_t=self.cfg.tau_t,
                                                  score_mask=negative if self.cfg.distill_over == "all" else None))

    # ---- generation ----------------------------------------------------------------------------------
    def generation_loss(self, items: list) -> tuple[Tensor, int]:
        """(summed negative log-likelihood, number of target tokens) of J_gen over `items`."""
        m, c = self.model, self.cfg
        total, count = torch.zeros((), device=m.device), 0
        groups = [[it for it in items if it.kind == "retrieval"], [it for it in items if it.kind != "retrieval"]]
        for reading, group in zip((True, False), groups):
            if not group:
                if self._lockstep():  # the same passes on every rank: a stand-in, times 0
                    one = m.token_ids([STAND_IN])
                    with self._autocast():
                        ll, _ = m.target_logliks(one, one, [[STAND_IN]] if reading and c.n_read > 0 else None)
                    total = total + ll.sum() * 0.0
                continue
            prompts = [p[-c.max_prompt_tokens:] if p else [] for p in m.token_ids([it.prompt for it in group])]
            targets = [t[:c.max_target_tokens] for t in m.token_ids(
                [it.target if it.kind == "plain" else target_text(it.target) for it in group])]
            passages = None
            if reading and c.n_read > 0:
                passages = [self.passage_text(list(dict.fromkeys(
                    (*it.candidates.positives, *it.candidates.hard_negatives)))[:c.n_read]) for it in group]
            with self._autocast():
                ll, n = m.target_logliks(prompts, targets, passages)
            total, count = total - ll.sum(), count + n
        return total, count

    def losses(self, batch: list, step: int, total_steps: int) -> dict[str, Tensor]:
        stage = self.stage(step, total_steps)
        ret = [it for it in batch if it.kind == "retrieval" and it.candidates is not None]
        out = {}
        out["gen"] = global_mean(*self.generation_loss(batch))  # the mean over the global micro-batch's tokens
        if ret or self._lockstep():  # lockstep: a rank without retrieval items runs the passes on stand-ins
            out["ret"] = self.retrieval_loss(ret, stage, step)
        else:  # every rank runs the same collectives, backward included: an empty candidate set, no query
            _, e_all = gather_candidates([], torch.zeros((0, 0), device=self.model.device))
            out["ret"] = global_mean(e_all.sum() * 0.0, 0)
        out["loss"] = self.cfg.gen_weight * out["gen"] + self.cfg.lam * out["ret"]
        out["distill"] = torch.tensor(float(stage == "distill"))
        return {"loss": out["loss"], **{k: v for k, v in out.items() if k != "loss"}}

    # ---- checkpoints ---------------------------------------------------------------------------------
    def save(self, folder: Path, state: dict | None = None) -> None:
        """An HF folder (safetensors + tokenizer) that imprag_bench.harness.lm.load_lm reads, plus imprag_config.json
        with b/t/l_max/passage_encoding/pooling (read by imprag_bench.imprag.system.config_from_options). `state`: the
        LM's full state dict (gathered from the shards by the training loop); default the LM's own."""
        folder = Path(folder)
        self.model.lm.save_pretrained(folder, state_dict=state, safe_serialization=True)
        self.model.tok.save_pretrained(folder)
        m = self.model
        (folder / CONFIG_FILE).write_text(json.dumps(
            {"b": m.b, "t": m.t, "l_max": m.cfg.l_max, "passage_encoding": m.cfg.passage_encoding,
             "pooling": m.cfg.pooling, "objective": asdict(self.cfg)}, indent=1))

    def load(self, folder: Path) -> None:
        """Load the weights saved by `save` (exact fp32 values; a tied lm_head may be absent)."""
        from safetensors.torch import load_file

        state = {}
        for f in sorted(Path(folder).glob("*.safetensors")):
            state.update(load_file(f, device=str(self.model.device)))
        missing, unexpected = self.model.lm.load_state_dict(state, strict=False)
        tied = getattr(self.model.lm.config, "tie_word_embeddings", False)
        missing = [k for k in missing if not (tied and k == "lm_head.weight")]
        if missing or unexpected:
            raise RuntimeError(f"{folder}: checkpoint mismatch: missing={missing} unexpected={unexpected}")
