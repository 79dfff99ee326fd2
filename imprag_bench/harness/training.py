"""How a trainable system plugs into `imprag-bench train`: named presets plus one function.

A trainer is registered under its system's name in `imprag_bench.harness.registry.TRAINERS`. Its presets are plain
dicts (quick / full / gpu); the command line overrides single keys with `--set key=value`. The function
trains (resuming from `<out>/checkpoint` if present) and returns the checkpoint folder, which the
system then evaluates with the option `checkpoint=<folder>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from imprag_bench.harness.errors import UserError


@dataclass(frozen=True)
class Trainer:
    """A training entry point with its presets."""

    name: str
    presets: dict[str, dict]
    run: Callable[[dict], Path]
    description: str = ""

    def config(self, preset: str, overrides: list[str] | None = None, out: str | None = None) -> dict:
        """The preset's settings with `key=value` overrides applied (values parsed as YAML scalars)."""
        if preset not in self.presets:
            raise UserError(f"trainer {self.name} has no preset {preset!r} (has: {', '.join(self.presets)})")
        cfg = {**self.presets[preset], "preset": preset}
        for item in overrides or []:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise UserError(f"--set {item!r}: expected key=value")
            if key not in cfg:
                raise UserError(f"--set {item!r}: unknown setting {key!r} for {self.name} "
                                f"(known: {', '.join(sorted(cfg))})")
            cfg[key] = yaml.safe_load(value)
        if out:
            cfg["out"] = out
        return cfg
