"""Run configuration: presets (YAML shipped in imprag_bench/harness/presets) overridden by command-line values."""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import yaml

from imprag_bench.harness.errors import UserError

PRESETS = ("quick", "full", "paper")
# Keys that change predictions: a resumed run must agree on all of them.
PREDICTION_KEYS = ("source", "corpus", "corpus_limit", "split", "tasks", "n", "k", "fewshot", "model", "dtype",
                   "max_new_tokens", "seed")


def load_preset(name: str) -> dict:
    """The preset's settings as a dict."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    text = resources.files("imprag_bench.harness.presets").joinpath(f"{name}.yaml").read_text()
    cfg = yaml.safe_load(text)
    cfg["preset"] = name
    return cfg


@dataclass(frozen=True)
class SystemSpec:
    """A system name plus per-system options, written `name` or `name:key=value,key=value`.

    The label (the `system` column of the leaderboard) is the text itself, or the `label=` option."""

    name: str
    options: dict
    label: str

    @classmethod
    def parse(cls, text: str) -> "SystemSpec":
        name, _, rest = text.partition(":")
        opts = {}
        for part in filter(None, rest.split(",")):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise UserError(f"system option {part!r} in {text!r} must be key=value")
            opts[key.strip()] = yaml.safe_load(value.strip())
        return cls(name.strip(), opts, str(opts.get("label", text.strip())))

    @property
    def slug(self) -> str:
        """File-name-safe form of the label."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label)
