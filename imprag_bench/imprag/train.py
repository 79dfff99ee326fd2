"""`imprag-bench train imprag`: pseudo-label candidates, build the training mix, train, return the checkpoint.

Steps of `run(cfg)`:
1. the seen tasks' train splits (nq, hotpotqa; unseen tasks are refused) and the corpus;
2. pseudo-labels from a dense retriever (MiniLM offline, Contriever-MSMARCO on the hub): top-`n_pos`
   positives, `n_hard` hard negatives sampled from ranks 10-50 (imprag_bench.imprag.candidates.pseudo_label), cached in
   `<out>/candidates-<settings>.jsonl` so that a resumed run does not redo them;
3. the mix (imprag_bench.imprag.train_mix.build_mix): retrieval items + instruction items + ~10% plain text; retrieval
   prompts get the evaluation's demonstrations when `train_fewshot` > 0;
4. stage 0 when `stage0_steps` > 0 (imprag_bench.imprag.projection_warmup, a CPU-budget addition): layer b's q/k projections
   fitted on frozen features against the whole corpus, saved as `<out>/checkpoint-stage0`;
5. imprag_bench.imprag.trainer.train with imprag_bench.imprag.objective.ImpRAGObjective; at the warmup -> self-distillation boundary
   the checkpoint is also copied to `<out>/checkpoint-warmup`, so every stage can be evaluated (Table 3);
6. when `refit_steps` > 0 (CPU `full`), the projections are fitted again on the trained model's features,
   saved as `<out>/checkpoint-refit`, which `run` then returns.
Evaluate with `imprag-bench run --systems imprag:checkpoint=<the returned folder>` (the index is rebuilt from
the trained weights: it is bound to their digest).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import TRAINERS
from imprag_bench.harness.training import Trainer
from imprag_bench.imprag.candidates import Candidates, pseudo_label, pseudo_label_answers
from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig, warmup_steps
from imprag_bench.imprag.train_mix import SEEN_TASKS, build_mix
from imprag_bench.imprag.trainer import TrainConfig, train, world

# Shared by every preset. grad-clip 1 / wd 0 as in the feasibility run. lam = 1: J_ret (NCE summed over the
# positives, ~5-10 at init) and J_gen (~2-3 nats/token) then pull with comparable force; the bottom layers serve
# both. tau_t = 1: Eq. 4 as written. score_scale = 1/sqrt(head_dim) and tau_r = 1/score_scale: the model's own
# attention scale (see imprag_bench.imprag.objective). l_max: the saved config, so training and the evaluation index embed
# the same (truncated) last token.
_COMMON = dict(source="minikilt", corpus="minikilt", corpus_limit=None, tasks=["nq", "hotpotqa"],
               model="smollm2-135m", retriever="minilm", n_pos=5, n_hard=3, answer_positives=False, lam=1.0,
               tau_t=1.0, score_scale=None, tau_r=None, lr=1e-4, weight_decay=0.0, grad_clip=1.0, lr_warmup=0.05,
               plain_share=0.1, b=None, t=None, passage_encoding="concat", query_k=3, device="cpu", seed=0,
               ckpt_every=25, stop_after=None, save_warmup=True, threads=1, gen_weight=1.0,
               max_prompt_tokens=128, max_target_tokens=32, max_examples=None, epochs=None,
               random_negatives=0, bank_size=0, distill_over="own", stage0_steps=0, stage0_lr=3e-3, train_fewshot=0,
               retriever_lr_scale=1.0, refit_steps=0)

# On this CPU (2 cores, ~96 GFLOPS bf16 per core, no AMX) one step costs seconds per passage batch. The CPU
# presets therefore use l_max 64 (training and index), few candidates with gradient per query, and
# answer-containing pseudo-positives (imprag_bench.imprag.candidates.pseudo_label_answers; the paper's plain top-5 labels
# are ~2/3 noise on mini-KILT), and J_gen reads the top positive (n_read=1), i.e. a passage with the answer.
# Stage 0 (imprag_bench.imprag.projection_warmup, not in the paper) first fits layer b's q_proj/k_proj on frozen features
# with every corpus passage as a negative: with 8 queries per step the joint training alone never saw the
# "hub" passages that raw q.k scores favour for every query (the untrained model retrieves one passage for
# all 100 dev questions) and lowered recall. The joint stages then adapt the whole model with 16 random corpus
# passages per step as extra (stop-grad) negatives, and self-distillation normalises P_R over all of C
# ("all"). Retrieval prompts carry the same 2 demonstrations as the quick/full evaluation presets
# (train_fewshot), so E_q is trained on its test input. In the joint stages the retriever's own weights (layers
# 0..b-1, layer b's norm and q/k) train at 0.1x the lr (retriever_lr_scale) to keep stage 0's fit. Measured
# (results/training/README.md, seen dev recall@5 / EM, nq+hotpotqa): untrained 12.5 / 5.0; `full` stage 0
# (3,000 steps) 32.0 / 9.0, after the joint NCE warmup 21.0 / 24.5, after self-distillation 23.0 / 25.0: the
# joint stages still move the features the projections read, so `full` ends with a refit of the projections on
# the final model's features (refit_steps, ~7 min), which gives 31.0 / 25.0 (EM unchanged). More stage-0
# steps (benchmarks/probe_stage0.py): 1,500 -> 30, 3,000 -> 33, 6,000 -> 32.5 on the probe.
# Measured step cost (benchmarks/bench_training.py, 2 threads, batch 8, 5 retrieval items, bare prompts):
# 4.8 s warmup, 6.8 s self-distillation; with the 2-shot retrieval prompts ~6 s and ~9 s.
_CPU = dict(batch_size=8, lr=1e-4, n_pos=2, n_hard=1, answer_positives=True, n_read=1, l_max=64, bf16=True,
            random_negatives=16, bank_size=0, distill_over="all", threads=None, train_fewshot=2,
            retriever_lr_scale=0.1)
PRESETS = {
    # The harness's quick budget (~10 min on a free 2-core machine): ~4.5 min of stage-0 features (cached
    # afterwards), 600 stage-0 steps, then 24 joint steps (16 NCE warmup + 8 self-distillation).
    "quick": {**_COMMON, **_CPU, "stage0_steps": 600, "steps": 24, "warmup_share": 0.67, "instruct_share": 0.15,
              "plain_share": 0.05, "out": "runs/train/imprag-quick"},
    # ~50 min on a free 2-core machine: 3,000 stage-0 steps, 250 joint steps of 8 items (70% NCE warmup, 30%
    # self-distillation; instruction items = 30% of the retrieval items, plain text 10%), then a 3,000-step
    # refit of the projections -> <out>/checkpoint-refit, the preset's result.
    "full": {**_COMMON, **_CPU, "stage0_steps": 3000, "refit_steps": 3000, "steps": 250, "warmup_share": 0.7,
             "instruct_share": 0.3, "out": "runs/train/imprag-full"},
    # The paper's setting: Llama-3.2-3B (b=7, t=19 from the layer table), real NQ + HotpotQA (5,000 each),
    # Contriever-MSMARCO top-5 positives + 5 hard negatives (plain labels, as in the paper), all 10 read in
    # J_gen, 10 epochs with 3 of warmup (warmup_share 0.3), bf16 autocast over fp32 master weights, lr 2e-5
    # (a usual full fine-tuning lr at 3B; the paper gives none), l_max 128, batch 64.
    "gpu": {**_COMMON, "source": "hub", "corpus": "hub", "model": "meta-llama/Llama-3.2-3B",
            "retriever": "facebook/contriever-msmarco", "n_hard": 5, "steps": None, "epochs": 10,
            "batch_size": 64, "warmup_share": 0.3, "instruct_share": 1.0, "n_read": 10, "l_max": 128,
            "lr": 2e-5, "bf16": True, "device": "cuda", "threads": None, "max_examples": 5000, "query_k": 10,
            "max_prompt_tokens": 512, "max_target_tokens": 64, "ckpt_every": 200, "out": "runs/train/imprag-gpu"},
}


def load_examples(cfg: dict) -> list:
    """The seen tasks' train splits (seeded subset of `max_examples` per task if set)."""
    from imprag_bench.harness.registry import TASKS

    bad = [t for t in cfg["tasks"] if t not in SEEN_TASKS]
    if bad:
        raise UserError(f"ImpRAG trains on the seen tasks only ({', '.join(SEEN_TASKS)}), not {', '.join(bad)}")
    out = []
    for t in cfg["tasks"]:
        exs = TASKS.get(t).load(cfg["source"], "train")
        if cfg.get("max_examples") and len(exs) > cfg["max_examples"]:
            keep = sorted(random.Random(f"{cfg['seed']}:{t}").sample(range(len(exs)), cfg["max_examples"]))
            exs = [exs[i] for i in keep]
        out += exs
    return out


def candidates(examples: list, corpus, cfg: dict, path: Path) -> list[Candidates]:
    """Pseudo-labels, computed once (rank 0) and cached as JSONL keyed by example id."""
    rank, size = world()
    if rank == 0 and not path.exists():
        from imprag_bench.baselines.retrievers.dense import DenseRetriever
        from imprag_bench.harness.assets import cache_root

        retriever = DenseRetriever(corpus, cache_root(), encoder=cfg["retriever"])
        queries = [ex.queries.get("prompt", ex.prompt) for ex in examples]
        if cfg["answer_positives"]:
            cands = pseudo_label_answers(queries, [ex.golds for ex in examples], retriever.search,
                                         lambda ids: [p.as_text() for p in corpus.get_many(ids)],
                                         seed=cfg["seed"], n_pos=cfg["n_pos"], n_hard=cfg["n_hard"])
        else:
            cands = pseudo_label(queries, retriever.search, seed=cfg["seed"], n_pos=cfg["n_pos"], n_hard=cfg["n_hard"])
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps({"id": ex.id, "positives": c.positives, "hard_negatives": c.hard_negatives})
                               + "\n" for ex, c in zip(examples, cands)))
        os.replace(tmp, path)
    if size > 1:
        torch.distributed.barrier()
    rows = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    if any(ex.id not in rows for ex in examples):
        raise UserError(f"{path}: cached candidates do not cover these examples; use another --out")
    return [Candidates(tuple(rows[ex.id]["positives"]), tuple(rows[ex.id]["hard_negatives"])) for ex in examples]


def build_objective(cfg: dict, corpus) -> ImpRAGObjective:
    """The model (from cfg['model']) wrapped in the ImpRAG objective with the preset's loss settings."""
    from imprag_bench.harness.lm import load_lm
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel

    device = cfg["device"]
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per torchrun process
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    hf, tok = load_lm(cfg["model"], device=device)
    model = ImpRAGModel(hf, tok, ImpRAGConfig(b=cfg["b"], t=cfg["t"], l_max=cfg["l_max"], k=cfg["query_k"],
                                              passage_encoding=cfg["passage_encoding"]))
    ocfg = ObjectiveConfig(lam=cfg["lam"], warmup_share=cfg["warmup_share"], score_scale=cfg["score_scale"],
                           tau_r=cfg["tau_r"], tau_t=cfg["tau_t"], n_read=cfg["n_read"], query_k=cfg["query_k"],
                           bf16=cfg["bf16"], gen_weight=cfg["gen_weight"],
                           max_prompt_tokens=cfg["max_prompt_tokens"], max_target_tokens=cfg["max_target_tokens"],
                           random_negatives=cfg["random_negatives"], bank_size=cfg["bank_size"],
                           distill_over=cfg["distill_over"], seed=cfg["seed"],
                           retriever_lr_scale=cfg["retriever_lr_scale"])
    return ImpRAGObjective(model, lambda ids: [p.as_text() for p in corpus.get_many(ids)], ocfg,
                           negative_pool=corpus.ids if cfg["random_negatives"] else None)


def run(cfg: dict) -> Path:
    """Train ImpRAG with the settings `cfg` (a preset plus overrides); resumes from `<out>/checkpoint`."""
    from imprag_bench.tasks.corpora import load_corpus

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    rank, _ = world()
    corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    examples, items = training_items(cfg, corpus, out)
    steps = cfg["steps"] or max(1, cfg["epochs"] * len(items) // cfg["batch_size"])
    if rank == 0:
        kinds = {k: sum(i.kind == k for i in items) for k in sorted({i.kind for i in items})}
        (out / "train_config.json").write_text(json.dumps({**cfg, "resolved_steps": steps, "mix": kinds}, indent=1))
    objective = build_objective(cfg, corpus)
    if cfg.get("stage0_steps"):
        projection_fit(objective, items, corpus, cfg, cfg["stage0_steps"], out, out / "checkpoint-stage0",
                       skip_if=out / "checkpoint")
    tc = TrainConfig(out=str(out), steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"],
                     weight_decay=cfg["weight_decay"], grad_clip=cfg["grad_clip"], lr_warmup=cfg["lr_warmup"],
                     seed=cfg["seed"], ckpt_every=cfg["ckpt_every"], stop_after=cfg.get("stop_after"))
    ck = train_in_stages(objective, items, tc, cfg["warmup_share"], bool(cfg.get("save_warmup", True)))
    state = json.loads((ck / "trainer_state.json").read_text())
    if not cfg.get("refit_steps") or state["step"] < steps:
        return ck
    # the joint stages move the features E_q/E_p are projected from; refit the projections to them
    return projection_fit(objective, items, corpus, cfg, cfg["refit_steps"], out / "refit", out / "checkpoint-refit")


def training_items(cfg: dict, corpus, out: Path) -> tuple[list, list]:
    """(examples, training mix) of the settings `cfg`: pseudo-labels (cached in `out`), the mix, and the
    evaluation's demonstrations on the retrieval prompts."""
    examples = load_examples(cfg)
    key = (f"{cfg['retriever'].replace('/', '_')}-p{cfg['n_pos']}-h{cfg['n_hard']}"
           f"{'-answer' if cfg['answer_positives'] else ''}-s{cfg['seed']}")
    cands = candidates(examples, corpus, cfg, out / f"candidates-{key}.jsonl")
    items = build_mix(examples, cands, corpus, seed=cfg["seed"],
                      n_instruct=int(cfg["instruct_share"] * len(examples)), plain_share=cfg["plain_share"])
    return examples, with_demonstrations(items, examples, cfg["source"], int(cfg.get("train_fewshot") or 0))


def stage0_inputs(items: list) -> tuple[list[str], list[list[str]]]:
    """(prompts, positive passage ids) of the retrieval items, one per question in id order: independent of
    the mix order, so presets (and benchmarks/probe_stage0.py) share the cached stage-0 features."""
    first = {it.id: it for it in items if it.kind == "retrieval"}
    ret = [first[k] for k in sorted(first)]
    return [it.prompt for it in ret], [list(it.candidates.positives) for it in ret]


def projection_fit(objective, items: list, corpus, cfg: dict, n_steps: int, work: Path, dst: Path,
                   skip_if: Path | None = None) -> Path:
    """Fit layer b's q_proj/k_proj against the whole corpus on the current model's frozen features
    (imprag_bench.imprag.projection_warmup; idempotent) and save the model to `dst` (not when `skip_if` exists: the joint
    training already started from this fit)."""
    from imprag_bench.harness.assets import cache_root
    from imprag_bench.imprag.projection_warmup import ProjectionWarmupConfig, run_stage0

    prompts, positives = stage0_inputs(items)
    work.mkdir(parents=True, exist_ok=True)
    fit = ProjectionWarmupConfig(n_steps, cfg["stage0_lr"], seed=cfg["seed"], bf16=cfg["bf16"])
    run_stage0(objective.model, prompts, positives, corpus.ids, corpus.texts, fit, work, cfg["query_k"],
               objective.scale, cache_root() / "imprag-stage0")
    if world()[0] == 0 and not dst.exists() and not (skip_if is not None and skip_if.exists()):
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        objective.save(tmp)
        os.replace(tmp, dst)
    return dst


def with_demonstrations(items: list, examples: list, source: str, fewshot: int) -> list:
    """Retrieval items' prompts as the runner builds them with `--fewshot N`: the task's first N train examples
    as demonstrations, then the prompt, so that E_q is trained on the input it is evaluated on. The
    demonstrations themselves keep their bare prompt."""
    if fewshot <= 0:
        return items
    from imprag_bench.harness.prompting import lm_input
    from imprag_bench.harness.registry import TASKS
    from imprag_bench.harness.runner import load_demos

    demos = {t: load_demos(TASKS.get(t), source, {"fewshot": fewshot}) for t in {ex.task for ex in examples}}
    demo_ids = {d.id for ds in demos.values() for d in ds}
    full = {f"ret:{ex.id}": lm_input(ex, demos[ex.task]) for ex in examples if ex.id not in demo_ids}
    return [replace(it, prompt=full[it.id]) if it.kind == "retrieval" and it.id in full else it for it in items]


def train_in_stages(objective, items: list, tc: TrainConfig, warmup_share: float, save_warmup: bool) -> Path:
    """`train`, stopping once at the warmup boundary to copy the checkpoint to `checkpoint-warmup` (resume is
    exact, so the result equals one uninterrupted run). Honours tc.stop_after over both parts."""
    out = Path(tc.out)
    state = out / "checkpoint" / "trainer_state.json"
    done = json.loads(state.read_text())["step"] if state.exists() else 0
    warm = warmup_steps(warmup_share, tc.steps)
    budget = tc.stop_after
    if save_warmup and done < warm < tc.steps:
        first = warm - done if budget is None else min(budget, warm - done)
        ck = train(objective, items, replace(tc, stop_after=first))
        done += first
        budget = None if budget is None else budget - first
        if done == warm and world()[0] == 0:
            dst = out / "checkpoint-warmup"
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(ck, dst, ignore=shutil.ignore_patterns("optimizer.pt"))
        if budget == 0:
            return ck
    return train(objective, items, replace(tc, stop_after=budget))


TRAINERS.add("imprag", Trainer("imprag", PRESETS, run,
                               "ImpRAG: NCE warmup on pseudo-labels, then self-distillation; joint LM loss"))
