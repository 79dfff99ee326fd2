"""Training objectives of the trained explicit-query baselines (paper section 7), for `imprag_bench.harness.training.loop.train`.

- `ReaderObjective` (RA-IT, and the reader stage of RA-DIT / RA-DIT-Llama): all LM parameters, J_gen
  (`reader_logliks`) on the target tokens only. Retrieval items read their retriever's top-k
  passages as TEXT in context (`imprag_bench.harness.prompting.passages_block`, each passage cut to `passage_tokens`
  tokens exactly like `imprag_bench.baselines.reader.Reader`), then the prompt; instruction items read their prompt
  alone; plain-text items are LM loss on the whole text. Targets are " {target}\\n" (the demonstration
  format of `imprag_bench.harness.prompting`: the newline teaches the reader to stop, as the evaluation stops at it).
- `RetrieverObjective` (retriever stage of RA-DIT / RA-DIT-Llama): only the retriever's parameters.
  Candidates per query are its pseudo-positives and hard negatives (`imprag_bench.harness.training.candidates`) plus the other
  queries' candidates in the batch (in-batch negatives). Multi-label NCE (`imprag_bench.harness.training.losses.multilabel_nce`,
  Eq. 3) for the first `warmup_steps` steps, then LM-likelihood distillation (`imprag_bench.harness.training.losses.distillation_kl`,
  Eqs. 4-6): P_T from the frozen LM's summed log-likelihood of the target given each single own candidate
  passage in context (computed under no_grad), P_R from the retriever's scores. In-batch negatives get no
  LM pass (that would cost B x more LM forwards); they enter P_R's normaliser with P_T = 0 (log-likelihood
  `NO_LM_PASS`), i.e. they are treated as irrelevant to the query.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.prompting import passages_block
from imprag_bench.harness.records import Passage
from imprag_bench.baselines.reader import clip_passages
from imprag_bench.harness.lm import pad
from imprag_bench.harness.training import losses
from imprag_bench.harness.training.data import target_text
from imprag_bench.harness.training.loop import gather_candidates, global_mean
from imprag_bench.harness.training.negatives import random_passages

NO_LM_PASS = -1e4  # log-likelihood given to in-batch negatives in the distillation target (P_T ~ 0)
CONFIG_FILE = "ra_config.json"


def item_text(item, passages: list[Passage] | None = None) -> tuple[str, str, str]:
    """(passage block, prompt, target) of a TrainItem as the reader is trained on it; the target is
    ImpRAG's " {target}\n" (`imprag_bench.imprag.objective.target_text`), plain text is LM loss on the whole text."""
    if item.kind == "plain":
        return "", "", item.target
    return passages_block(passages or []), item.prompt, target_text(item.target)


def encode_triples(tok, triples: list[tuple[str, str, str]], max_prompt_tokens: int = 192,
                   max_target_tokens: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(passage block, prompt, target) -> right-padded ids, mask and labels (-100 everywhere but target
    tokens). As ImpRAG's J_gen: the prompt is cut on the left to `max_prompt_tokens`, the target on the right
    to `max_target_tokens`; passages (already clipped per passage) are kept whole."""
    seqs, labels = [], []
    for block, prompt, tgt in triples:
        c = list(tok(block, add_special_tokens=False)["input_ids"]) if block else []
        q = list(tok(prompt, add_special_tokens=False)["input_ids"])[-max_prompt_tokens:] if prompt else []
        t = list(tok(tgt, add_special_tokens=False)["input_ids"])[:max_target_tokens]
        seqs.append(c + q + t)
        labels.append([-100] * (len(c) + len(q)) + t)
    pad_id = next(i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None)
    ids, mask = pad(seqs, pad_id, "right")
    lab, _ = pad(labels, -100, "right")
    return ids, mask, lab


def reader_logliks(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, bf16: bool
                   ) -> tuple[torch.Tensor, int]:
    """(log P(labelled tokens) per sequence [B], number of them) under an HF causal LM, its output
    embeddings applied at labelled positions only (harness.training.losses.target_logliks)."""
    dev = model.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = model.base_model(input_ids=ids.to(dev), attention_mask=mask.long().to(dev),
                                  use_cache=False).last_hidden_state
        return losses.target_logliks(hidden, model.get_output_embeddings(), labels.to(dev))


class ReaderObjective:
    """J_gen of the whole LM on the training mix, retrieval items reading their retrieved passages."""

    def __init__(self, model, tok, contexts: dict[str, list[Passage]], passage_tokens: int = 128,
                 max_prompt_tokens: int = 192, max_target_tokens: int = 48, bf16: bool = False,
                 retriever_folder: str | Path | None = None, retriever_pointer: dict | None = None,
                 meta: dict | None = None):
        self.model, self.tok = model, tok
        self.passage_tokens, self.max_prompt_tokens, self.max_target_tokens = passage_tokens, max_prompt_tokens, max_target_tokens
        self.bf16 = bf16
        self.contexts = {i: clip_passages(tok, ps, passage_tokens) for i, ps in contexts.items()}
        self.retriever_folder = retriever_folder
        self.retriever_pointer = retriever_pointer
        self.meta = meta or {}
        self.model.train()  # no dropout in Llama-family LMs; kept for completeness
        for p in self.model.parameters():
            p.requires_grad_(True)

    fsdp_units = "layer"  # one HF forward per step: one FSDP2 unit per decoder layer (harness.training.engine)

    def module(self) -> torch.nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    def parameters(self):
        return self.model.parameters()

    def triples(self, batch) -> list[tuple[str, str, str]]:
        return [item_text(it, self.contexts.get(it.id) if it.kind == "retrieval" else None) for it in batch]

    def losses(self, batch, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        ids, mask, labels = encode_triples(self.tok, self.triples(batch), self.max_prompt_tokens,
                                           self.max_target_tokens)
        ll, n = reader_logliks(self.model, ids, mask, labels, self.bf16)
        gen = global_mean(-ll.sum(), n)  # the mean over the global micro-batch's target tokens
        return {"loss": gen, "gen": gen}

    def save(self, folder: Path, state: dict | None = None) -> None:
        """The reader as an HF folder (`state`: its full state dict, gathered by the training loop), the
        retriever it read from and ra_config.json."""
        folder = Path(folder)
        self.model.save_pretrained(folder, state_dict=state)
        self.tok.save_pretrained(folder)
        ret = folder / "retriever"
        if self.retriever_folder is not None:
            shutil.copytree(self.retriever_folder, ret, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("dcp", "extra.pt", "trainer_state.json", "log.jsonl"))
        else:
            ret.mkdir(parents=True, exist_ok=True)
            (ret / "retriever.json").write_text(json.dumps(self.retriever_pointer or {}, indent=1))
        (folder / CONFIG_FILE).write_text(json.dumps({**self.meta, "passage_tokens": self.passage_tokens,
                                                      "max_prompt_tokens": self.max_prompt_tokens,
                                                      "max_target_tokens": self.max_target_tokens}, indent=1))


class TrainableRetriever:
    """A retriever encoder trained against the frozen LM: `harness.dense.DenseEncoder` (RA-DIT) or
    `baselines.retrievers.lm_slice.LMSliceEncoder` (RA-DIT-Llama). Both expose `module`, `query_embed`,
    `passage_embed`, `score_scale` and `save`; the module stays in eval mode (no dropout) with
    every parameter trainable. `score_scale` (default: the encoder's own) multiplies the scores in training."""

    def __init__(self, encoder, score_scale: float | None = None):
        self.enc = encoder
        encoder.module.eval()
        for p in encoder.module.parameters():
            p.requires_grad_(True)
        self.score_scale = encoder.score_scale if score_scale is None else float(score_scale)

    def parameters(self):
        return self.enc.module.parameters()

    def query_embed(self, texts):
        return self.enc.query_embed(texts)

    def passage_embed(self, texts):
        return self.enc.passage_embed(texts)

    def save(self, folder, state: dict | None = None):
        self.enc.save(folder, state)


class RetrieverObjective:
    """Retriever training against a frozen LM: multi-label NCE warm-up, then LM-likelihood distillation.

    CPU-budget options (off by default, RA-DIT-Llama's `cpu-additions` recipe, as ImpRAG's):
    `random_negatives` corpus passages per step (`harness.training.negatives.random_passages(pool, n, seed,
    step)`, none among the batch's columns), embedded without gradient and appended as extra columns: negatives
    of every query in the NCE warm-up, and in the distillation part of P_R's normaliser with P_T = 0 (like the
    in-batch negatives; only when `inbatch`); `lr_scale` multiplies the lr of every retriever parameter."""

    def __init__(self, retriever, lm, tok, corpus: Corpus, warmup_steps: int = 0, passage_tokens: int = 128,
                 max_prompt_tokens: int = 192, max_target_tokens: int = 48, tau_t: float = 1.0,
                 inbatch: bool = True, lm_batch: int = 16, bf16: bool = False, random_negatives: int = 0,
                 negative_pool: list[str] | None = None, seed: int = 0, lr_scale: float = 1.0):
        self.retriever, self.lm, self.tok, self.corpus = retriever, lm, tok, corpus
        self.warmup_steps, self.passage_tokens = warmup_steps, passage_tokens
        self.max_prompt_tokens, self.max_target_tokens, self.bf16 = max_prompt_tokens, max_target_tokens, bf16
        self.tau_t, self.inbatch, self.lm_batch = tau_t, inbatch, lm_batch
        if random_negatives and not negative_pool:
            raise ValueError("random_negatives needs a negative_pool (the corpus passage ids)")
        self.random_negatives, self.negative_pool, self.seed = random_negatives, list(negative_pool or []), seed
        self.lr_scale = float(lr_scale)
        self.lm.eval()
        for p in self.lm.parameters():
            p.requires_grad_(False)

    fsdp_units = "model"  # a step runs the encoder a data-dependent number of times

    def module(self) -> torch.nn.Module:
        return self.retriever.enc.module

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def parameters(self):
        return self.retriever.parameters()

    def lr_scales(self) -> dict[int, float]:
        """id(parameter) -> lr multiplier for the trainer: `lr_scale` on every retriever parameter (the whole
        retriever is the retriever's own weights here; ImpRAG scales its layers 0..b-1 and layer b's q/k)."""
        return {} if self.lr_scale == 1.0 else {id(p): self.lr_scale for p in self.parameters()}

    def extra_negatives(self, cols: list[str], step: int) -> list[str]:
        """This step's random corpus passages that are not already columns (a function of seed and step)."""
        taken = set(cols)
        return [p for p in random_passages(self.negative_pool, self.random_negatives, self.seed, step)
                if p not in taken]

    def table(self, batch):
        """(items, column passage ids, positive mask, own-candidate mask) for the retrieval items of a batch
        (this rank's part; `losses` widens the columns to the global micro-batch's)."""
        items = [it for it in batch if it.candidates is not None]
        cols = list(dict.fromkeys(pid for it in items
                                  for pid in (*it.candidates.positives, *it.candidates.hard_negatives)))
        return (items, cols, *self.masks(items, cols))

    @staticmethod
    def masks(items, cols: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, own-candidate) bool masks [items, cols]."""
        where = {pid: j for j, pid in enumerate(cols)}
        pos = torch.zeros(len(items), len(cols), dtype=torch.bool)
        own = torch.zeros_like(pos)
        for i, it in enumerate(items):
            for pid in it.candidates.positives:
                pos[i, where[pid]] = True
            for pid in (*it.candidates.positives, *it.candidates.hard_negatives):
                own[i, where[pid]] = True
        return pos, own

    def embed(self, items, cols) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q [items, d], E_p [cols, d]) in fp32, with gradients into the retriever."""
        dev = self.lm.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            e_q = self.retriever.query_embed([it.prompt for it in items])
            e_p = self.retriever.passage_embed([p.as_text() for p in self.corpus.get_many(cols)])
        return e_q.float(), e_p.float()

    def score(self, e_q: torch.Tensor, e_p: torch.Tensor, extra: list[str] = ()) -> torch.Tensor:
        """s(q, p) * score_scale over [queries, columns + extra]; the `extra` passages are embedded without
        gradient (stop-grad negatives)."""
        if extra:
            dev = self.lm.device
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                e_x = self.retriever.passage_embed([p.as_text() for p in self.corpus.get_many(list(extra))])
            e_p = torch.cat([e_p, e_x.float()])
        return (e_q @ e_p.T) * self.retriever.score_scale

    def scores(self, items, cols, extra: list[str] = ()) -> torch.Tensor:
        """`score` of `embed`: [queries, columns + extra] for one process's items and columns."""
        return self.score(*self.embed(items, cols), extra)

    @torch.no_grad()
    def lm_logliks(self, items, cols, own) -> torch.Tensor:
        """log P_LM(target | single passage, prompt) for own candidates; `NO_LM_PASS` elsewhere."""
        out = torch.full(own.shape, NO_LM_PASS)
        cells = own.nonzero().tolist()
        clipped = {pid: clip_passages(self.tok, [self.corpus[pid]], self.passage_tokens)
                   for pid in {cols[j] for _, j in cells}}
        for s in range(0, len(cells), self.lm_batch):
            part = cells[s:s + self.lm_batch]
            triples = [item_text(items[i], clipped[cols[j]]) for i, j in part]
            ids, mask, labels = encode_triples(self.tok, triples, self.max_prompt_tokens, self.max_target_tokens)
            ll = reader_logliks(self.lm, ids, mask, labels, self.bf16)[0].cpu()
            for (i, j), v in zip(part, ll.tolist()):
                out[i, j] = v
        return out

    def losses(self, batch, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        items, cols, _, _ = self.table(batch)
        key = "nce" if step < self.warmup_steps else "kl"
        if items:
            e_q, e_p = self.embed(items, cols)
        else:
            e_p = torch.zeros((0, 0), device=self.lm.device)
        # in-batch negatives: every rank's candidates (differentiable gather; a passage id counts once)
        all_ids, e_all = gather_candidates(cols, e_p)
        if not items:  # the same collectives as the other ranks, backward included
            zero = e_all.sum() * 0.0 + sum(p.sum() for p in self.parameters()) * 0.0
            zero = global_mean(zero, 0)
            return {"loss": zero, key: zero}
        first: dict[str, int] = {}
        for j, pid in enumerate(all_ids):
            first.setdefault(pid, j)
        cols, e_c = list(first), e_all[list(first.values())]
        pos, own = self.masks(items, cols)
        extra = self.extra_negatives(cols, step) if self.random_negatives else []
        s = self.score(e_q, e_c, extra)
        if extra:  # extra columns: never a positive, never an own candidate (so never scored by the LM)
            none = torch.zeros(len(items), len(extra), dtype=torch.bool)
            cols, pos, own = cols + extra, torch.cat([pos, none], 1), torch.cat([own, none], 1)
        if key == "nce":
            nce = global_mean(*losses.multilabel_nce_sum(s, pos.to(s.device), (~pos).to(s.device)))
            return {"loss": nce, "nce": nce}
        ll = self.lm_logliks(items, cols, own).to(s.device)
        mask = torch.ones_like(own) if self.inbatch else own
        kl = global_mean(*losses.distillation_kl_sum(s, ll, mask.to(s.device), tau_r=1.0, tau_t=self.tau_t))
        return {"loss": kl, "kl": kl}

    def save(self, folder: Path, state: dict | None = None) -> None:
        """The retriever as a folder its system loads (`state`: the encoder's full state dict)."""
        self.retriever.save(folder, state)
