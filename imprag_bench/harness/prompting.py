"""How every system turns an example into LM input text, so that all readers see the same format.

Few-shot demonstrations (from the task's train split) come first, each as "{prompt} {target}" on its own
line; explicit-query readers put retrieved passages before them; the example's prompt ends the input and
the LM's continuation up to the first newline is the answer.
"""
from __future__ import annotations

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Example, Passage


def demos_block(demos: list[Example]) -> str:
    """Demonstrations, one per line, each ending in a newline."""
    return "".join(f"{d.prompt} {d.target}\n" for d in demos)


def passages_block(passages: list[Passage]) -> str:
    """Retrieved passages as context, separated by blank lines."""
    return "".join(f"{p.as_text()}\n\n" for p in passages)


def lm_input(example: Example, demos: list[Example] | None = None, passages: list[Passage] | None = None) -> str:
    """The full reader input: [passages] [demonstrations] prompt."""
    return passages_block(passages or []) + demos_block(demos or []) + example.prompt


def load_demos(spec, source: str, cfg: dict) -> list[Example]:
    """Few-shot demonstrations from the task's train split (dev if it has no train split).
    Local files have a single split, so they get none (the demos would also be evaluated)."""
    if not cfg.get("fewshot") or source == "local":
        return []
    for split in ("train", "dev"):
        try:
            pool = spec.load(source, split)
        except UserError:
            continue
        if pool:
            return pool[: cfg["fewshot"]]
    return []
