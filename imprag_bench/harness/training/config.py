"""Training presets as data: YAML files beside the run presets, loaded into typed configs.

`presets/train/shared.yaml` holds, per budget (quick / full / paper), everything the trained systems share
so that they are compared at one matched budget: the data and pseudo-labels, the training mix, the
demonstrations, the optimiser and schedule, the model and the token budgets. `presets/train/<system>.yaml`
holds, per budget, the system's recipes: `paper` (its own settings as the paper states them) and, where it
has them, `cpu-additions`; the first one listed is the budget's default (`--recipe` picks another). A system
file that sets a shared key is refused, so no system can drift off the shared budget. Every deviation from
the paper is named in `additions` (the budget's shared ones plus the recipe's own) from `ADDITIONS`, each
saying what it changes and why.

Configs are dataclasses: unknown keys (in a file or in `--set key=value`) are refused with the closest known
key; values are type-checked. They also read like a mapping (`cfg["lr"]`, `cfg.get("out")`), which is how
the training code consumes them.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources

import yaml

from imprag_bench.harness.errors import UserError

BUDGETS = ("quick", "full", "paper")

# Every deviation from the paper's recipe a preset may carry, with what it does and why (docs/usage.md table).
ADDITIONS = {
    "small-budget": "fewer steps, candidates and tokens than the paper (l_max 64, 2 positives, 1 hard negative, "
                    "1 passage read in J_gen): what 2 CPU cores train in minutes",
    "answer-positives": "pseudo-positives are the dense retriever's top-50 passages that contain a gold answer, not "
                        "its plain top-5: only ~1/3 of mini-KILT train questions have an answer in MiniLM's top 5",
    "train-fewshot": "retrieval prompts carry the evaluation's 2 demonstrations, so E_q is trained on its test input",
    "minilm-labels": "pseudo-labels and RA-IT/RA-DIT retrieval from all-MiniLM-L6-v2 (Contriever-MSMARCO is not "
                     "available offline)",
    "offline-instruct": "instruction items built from the Wikipedia corpus (reading comprehension, phrase denoising, "
                        "sentence generation); the paper's hub sets (oasst1, CoQA, ...) are not available offline",
    "stage0": "before joint training, layer b's q/k projections are fitted with Eq. 3 against the whole corpus on "
              "frozen features: small batches never contain the 'hub' passages raw q.k favours",
    "refit": "after training the q/k projections are fitted again on the trained model's features (ImpRAG: after "
             "the joint training; RA-DIT-Llama: after its retriever stage, before the reader stage)",
    "random-negatives": "16 random corpus passages per step as extra stop-grad negatives",
    "retriever-lr-scale": "the retriever's own weights train at 0.1x lr (ImpRAG: layers 0..b-1, layer b's norm and "
                          "q/k; RA-DIT-Llama: its whole layers-0..b copy, every weight of which is the retriever's)",
    "attention-scale": "retrieval scores are multiplied by 1/sqrt(head_dim) in the losses (Eq. 3 has no scale)",
    "own-teacher": "in self-distillation the LM scores only each query's own candidates (P_T = 0 on in-batch "
                   "negatives); the paper scores every candidate in C",
    # what the paper's recipe cannot follow from the hub (the only additions the `paper` budget may carry)
    "dpr-wikipedia-2018": "the knowledge corpus is DPR's 21M-passage Dec-2018 Wikipedia (facebook/wiki_dpr); the "
                          "paper's Atlas Dec-2021 Wikipedia with infoboxes (37.5M passages) is not on the hub",
    "rule-denoising": "phrase-denoising items are made by rule (a span of a real sentence shuffled); the paper "
                      "prompted Llama-3.1-70B with Wikipedia paragraphs, and that data is not released",
    "pubmedqa-artificial": "PubMedQA's 5,000 items come from its pqa_artificial subset: the labelled one has 1,000 "
                           "examples and the paper does not say which it used",
    "mean-pooling": "E_q / E_p are the mean of the tokens' layer-b q/k states, not the last token's (harness.pooling): "
                    "the pooling ablation axis, added to a config by `pooling=mean`, never by a recipe",
    "aida-window": "evaluation: AIDA's KILT input (a whole news document) is cut to 64 words each side of the "
                   "marked mention, so that it fits the reader's context beside k passages; the paper does not say",
}
UNAVOIDABLE = ("dpr-wikipedia-2018", "rule-denoising", "pubmedqa-artificial", "aida-window")


class ConfigBase:
    """Typed config helpers: mapping-style reads, dict form, construction that rejects unknown keys."""

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default) if key in self.keys() else default

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str):
        """Build from `values`, refusing unknown keys and values of the wrong type (`where` names the source)."""
        known = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UserError(f"{where}: unknown setting {key!r}{hint}")
            if not _matches(value, hints[key]):
                raise UserError(f"{where}: {key}={value!r} is not a {_type_name(hints[key])}")
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (inner,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(inner is typing.Any or _matches(v, inner) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


@dataclass
class SharedTrainConfig(ConfigBase):
    """The settings every trained system shares at one budget (presets/train/shared.yaml)."""

    preset: str = ""  # the budget's name, set by the loader
    recipe: str = "paper"  # the system's recipe at this budget: "paper" or "cpu-additions" (set by the loader)
    default_recipe: str = "paper"  # the budget's default recipe for this system (set by the loader)
    additions: list[str] = field(default_factory=list)  # keys of ADDITIONS: the budget's and the recipe's
    # data: the seen tasks' train splits, pseudo-labels, mix and demonstrations
    source: str = "minikilt"
    corpus: str = "minikilt"
    corpus_limit: int | None = None
    tasks: list[str] = field(default_factory=lambda: ["nq", "hotpotqa"])
    max_examples: int | None = None  # per task (paper: 5,000)
    retriever: str = "minilm"  # the pseudo-labeller (paper: facebook/contriever-msmarco)
    n_pos: int = 5
    n_hard: int = 3
    answer_positives: bool = False
    instruct_share: float = 1.0  # instruction items per retrieval item
    instruct_sets: list[str] = field(default_factory=list)  # hub instruction sets (paper: oasst1, coqa, ...)
    plain_share: float = 0.1
    synthetic_each: int | None = None  # phrase-denoising and sentence-generation items, each (paper: 5,000); None:
    # corpus-built items fill `instruct_share` (reading comprehension first: the offline stand-in for the hub sets)
    train_fewshot: int = 0
    seed: int = 0
    # model and token budgets
    model: str = "smollm2-135m"
    device: str = "cpu"
    bf16: bool | str = "auto"  # true | false | "auto" (bf16 where the hardware computes it natively)
    threads: int | None = None
    b: int | None = None  # retriever depth of ImpRAG and RA-DIT-Llama (None: the paper's layer table)
    l_max: int = 128
    n_read: int = 10  # passages a retrieval item reads in J_gen (the readers' k in training)
    max_prompt_tokens: int = 512
    max_target_tokens: int = 64
    # optimisation
    steps: int | None = None
    epochs: int | None = 10
    batch_size: int = 64
    lr: float = 2e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lr_warmup: float = 0.05
    warmup_share: float = 0.3  # share of retriever steps with the NCE warmup (paper: 3 of 10 epochs)
    retriever_steps: int | None = None  # a separate retriever stage's steps (RA-DIT, RA-DIT-Llama); None: steps
    retriever_batch_size: int | None = None  # its batch; None: batch_size
    tau_t: float = 1.0
    ckpt_every: int = 200
    stop_after: int | None = None
    # the distributed engine (harness.training.engine): the global batch is the same for any number of ranks
    micro_batch: int | None = None  # at most this many items per rank and forward (gradient accumulation); None:
    # the rank's whole share of the global batch
    strategy: str = "auto"  # auto (FSDP2 under torchrun, one process otherwise), fsdp, ddp or none
    checkpointing: bool = False  # activation checkpointing of every decoder layer
    out: str | None = None
    cache_dir: str | None = None


def engine_settings(cfg, device: str) -> dict:
    """The TrainConfig keys of the distributed engine from a trainer config: micro-batch, strategy,
    activation checkpointing, and FSDP2's bf16 policy where `device` computes bf16 (harness.hardware)."""
    from imprag_bench.harness.hardware import use_bf16

    return {"micro_batch": cfg.get("micro_batch"), "strategy": cfg.get("strategy", "auto"),
            "checkpointing": bool(cfg.get("checkpointing")), "fsdp_bf16": use_bf16(cfg["bf16"], device)}


def _read_yaml(name: str) -> dict:
    path = resources.files("imprag_bench.harness.presets").joinpath("train", f"{name}.yaml")
    if not path.is_file():
        raise UserError(f"no training preset file presets/train/{name}.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in data.items() if not str(k).startswith("x-")}  # x-...: YAML anchors only


def recipes(system: str, budget: str, file: str | None = None) -> list[str]:
    """The recipes `system` has at `budget`, the default (its file's first) first."""
    return list(_read_yaml(file or system).get(budget, {}))


def load_train_preset(system: str, budget: str, cls: type, file: str | None = None,
                      overrides: list[str] | None = None, out: str | None = None, recipe: str | None = None):
    """The typed config of `system` at `budget` with one of its recipes (default: the first its file lists):
    shared.yaml's budget, then the recipe's own keys from the system file, then `--set key=value` overrides."""
    if budget not in BUDGETS:
        close = difflib.get_close_matches(budget, BUDGETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown training preset {budget!r}{hint} (known: {', '.join(BUDGETS)})")
    name = file or system
    shared, own = _read_yaml("shared"), _read_yaml(name).get(budget, {})
    if not own:
        raise UserError(f"presets/train/{name}.yaml has no recipe for budget {budget!r}")
    recipe = recipe or next(iter(own))
    if recipe not in own:
        raise UserError(f"{system} has no recipe {recipe!r} at budget {budget!r} (has: {', '.join(own)})")
    mine = dict(own[recipe] or {})
    where = f"training preset {system} [{budget}, {recipe}]"
    clash = sorted(set(mine) & (set(SharedTrainConfig.keys()) - {"additions"}))
    if clash:
        raise UserError(f"presets/train/{name}.yaml [{budget}][{recipe}]: {', '.join(clash)} belong to "
                        "presets/train/shared.yaml, so that every system trains at the same budget")
    base = dict(shared[budget])
    own_additions = mine.pop("additions", [])
    if recipe == "paper" and own_additions:
        raise UserError(f"{where}: the paper recipe cannot carry additions {own_additions}")
    additions = list(base.pop("additions", [])) + [a for a in own_additions if a not in base.get("additions", [])]
    unknown = [a for a in additions if a not in ADDITIONS]
    if unknown:
        raise UserError(f"{where}: unknown additions {unknown} (known: {', '.join(ADDITIONS)})")
    values = {**base, **mine, "additions": additions, "preset": budget, "recipe": recipe,
              "default_recipe": next(iter(own))}
    for item in overrides or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        if key in ("preset", "recipe", "default_recipe", "additions"):
            raise UserError(f"--set {item!r}: choose the budget with --preset and the recipe with --recipe")
        values[key] = yaml.safe_load(value)
    if out:
        values["out"] = out
    cfg = cls.from_dict(values, where + (" with --set" if overrides else ""))
    if budget == "paper" and set(cfg.additions) - set(UNAVOIDABLE):
        raise UserError(f"{where}: the paper budget can carry only what the hub forces ({', '.join(UNAVOIDABLE)}), "
                        f"not {sorted(set(cfg.additions) - set(UNAVOIDABLE))}")
    if getattr(cfg, "pooling", "last") != "last" and "mean-pooling" not in cfg.additions:
        cfg.additions = [*cfg.additions, "mean-pooling"]  # an ablation setting is named where the config is
    return cfg


def default_out(system: str, cfg) -> str:
    """runs/train/<system>-<budget>, plus -<recipe> for a recipe that is not the budget's default."""
    return cfg.out or f"runs/train/{system}-{cfg.preset}" + (f"-{cfg.recipe}" if cfg.recipe != cfg.default_recipe
                                                              else "")
