"""The shared reader of the explicit-query baselines: one LM, one prompt format, greedy short answers."""
from __future__ import annotations

from imprag_bench.harness.lm import generate, load_lm, truncate_tokens
from imprag_bench.harness.prompting import lm_input
from imprag_bench.harness.records import Example, Passage
from imprag_bench.harness.system import RunContext


def clip_passages(tok, passages: list[Passage], max_tokens: int) -> list[Passage]:
    """Each passage's text cut to `max_tokens` tokens (title kept), as every explicit reader reads it."""
    return [Passage(p.id, p.title, truncate_tokens(tok, p.text, max_tokens)) for p in passages]


class Reader:
    """Loads the LM named in the run options and answers batches of examples."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.model, self.tok = load_lm(ctx.opt("checkpoint") or ctx.opt("model", "smollm2-135m"),
                                       dtype=ctx.opt("dtype", "auto"), device=ctx.opt("device", "cpu"))
        self.max_new_tokens = int(ctx.opt("max_new_tokens", 16))
        self.batch_size = int(ctx.opt("batch_size", 8))
        self.passage_tokens = int(ctx.opt("passage_tokens", 128))

    def clip(self, passages: list[Passage]) -> list[Passage]:
        """Each passage cut to `passage_tokens` tokens: the same budget as ImpRAG's l_max."""
        return clip_passages(self.tok, passages, self.passage_tokens)

    def answer(self, examples: list[Example], passages: list[list[Passage]] | None = None) -> list[str]:
        """Greedy answers; inputs are length-sorted into batches to waste little on padding."""
        inputs = [lm_input(ex, self.ctx.demos.get(ex.task, []), self.clip(passages[i]) if passages else None)
                  for i, ex in enumerate(examples)]
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out = [""] * len(inputs)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            for i, text in zip(idx, generate(self.model, self.tok, [inputs[i] for i in idx], self.max_new_tokens)):
                out[i] = text
        return out
