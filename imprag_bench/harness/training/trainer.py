"""How a trainable system plugs into `imprag-bench train`: a typed config class plus one function.

A trainer is registered under its system's name in `harness.registry.TRAINERS`. Its presets are data:
presets/train/shared.yaml (the budget every trained system shares) plus presets/train/<file>.yaml (its own
keys), loaded into `config_cls` (harness.training.config); the command line overrides single keys with
`--set key=value`. The function trains (resuming from `<out>/checkpoint` if present) and returns the
checkpoint folder, which the system then evaluates with the option `checkpoint=<folder>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imprag_bench.harness.training.config import BUDGETS, load_train_preset, recipes


@dataclass(frozen=True)
class Trainer:
    """A training entry point: its typed config class, the preset file of its own keys, and `run(cfg)`."""

    name: str
    config_cls: type
    run: Callable[[object], Path]
    description: str = ""
    preset_file: str | None = None  # presets/train/<preset_file>.yaml; default: the trainer's name

    def config(self, preset: str, overrides: list[str] | None = None, out: str | None = None,
               recipe: str | None = None):
        """The typed preset (a budget, and a recipe: default the budget's first) with `key=value` overrides
        applied (values parsed as YAML scalars)."""
        return load_train_preset(self.name, preset, self.config_cls, self.preset_file, overrides, out, recipe)

    def train(self, cfg) -> Path:
        """`run(cfg)` after the model's weights are known to be there: a gated or missing hub model fails with
        the how-to-provide message before any corpus, task data or pseudo-label is read."""
        from imprag_bench.harness.lm import check_weights
        from imprag_bench.harness.locks import folder_lock
        from imprag_bench.harness.training.config import default_out

        if cfg.get("model"):
            check_weights(str(cfg["model"]))
        with folder_lock(default_out(self.name, cfg), "training folder"):  # one writer per training folder
            return self.run(cfg)

    @property
    def presets(self) -> dict:
        """Every budget's typed config with its default recipe (quick / full / paper)."""
        return {b: self.config(b) for b in BUDGETS}

    @property
    def variants(self) -> dict:
        """Every (budget, recipe) the trainer has, typed."""
        return {(b, r): self.config(b, recipe=r) for b in BUDGETS for r in recipes(self.name, b, self.preset_file)}
