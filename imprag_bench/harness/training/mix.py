"""The training mix (paper 4.6), scaled to the offline setting.

- retrieval items: the seen tasks' train splits (NQ-like and HotpotQA-like on mini-KILT; NQ and HotpotQA
  on real data), with pseudo-labelled candidate passages; they get J_gen (reading their candidates) and J_ret.
- retrieval-free instruction items built from the corpus's Wikipedia text (J_gen only, no passages):
  reading comprehension (a seen-task train question with a pseudo-positive passage that contains the
  answer, in context: "{context} Q: {question} A:"), phrase denoising (a span of a real sentence shuffled
  between [START] and [END], the original phrase as target), next/previous sentence generation (paper
  Table 1 templates).
- about 10% plain Wikipedia text (LM loss on the whole text).
The unseen tasks are never used. Everything is seeded and deterministic.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.metrics import contains_answer
from imprag_bench.harness.records import Example
from imprag_bench.harness.training.candidates import Candidates

DENOISE = "{context} Recover the original phrases marked between [START] and [END] in the given text A:"
SENTGEN = ("{context} [SEP] {direction} sentence Generate a sentence corresponding to the relation specified "
           "after [SEP] for the context mentioned before [SEP] A:")
READING = "{context} Q: {question} A:"
SEEN_TASKS = ("nq", "hotpotqa")


@dataclass
class TrainItem:
    """One training instance. `candidates` is set for retrieval items only."""

    id: str
    kind: str  # retrieval | reading | denoise | sentgen | instruct | plain
    prompt: str
    target: str
    candidates: Candidates | None = None
    meta: dict = field(default_factory=dict)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.split()) >= 4]


def retrieval_items(examples: list[Example], cands: list[Candidates]) -> list[TrainItem]:
    """Seen-task examples with their candidate passages."""
    return [TrainItem(f"ret:{ex.id}", "retrieval", ex.prompt, ex.target, c) for ex, c in zip(examples, cands)]


def reading_items(examples: list[Example], cands: list[Candidates], corpus: Corpus) -> list[TrainItem]:
    """Reading comprehension: the first pseudo-positive that contains a gold answer, in context."""
    out = []
    for ex, c in zip(examples, cands):
        for pid in c.positives:
            p = corpus[pid]
            if contains_answer(ex.golds, p.as_text()):
                question = ex.meta.get("question", ex.prompt)
                out.append(TrainItem(f"rc:{ex.id}", "reading", READING.format(context=p.text, question=question),
                                     ex.target))
                break
    return out


def denoise_item(pid: str, text: str, rng: random.Random) -> TrainItem | None:
    """Shuffle a 2-4 word span of one sentence; the target is the original span."""
    words = text.split()
    if len(words) < 12:
        return None
    n = rng.randint(2, 4)
    start = rng.randrange(1, len(words) - n)
    span = words[start:start + n]
    noisy = span[:]
    for _ in range(5):
        rng.shuffle(noisy)
        if noisy != span:
            break
    if noisy == span:
        return None
    context = " ".join(words[:start] + ["[START]"] + noisy + ["[END]"] + words[start + n:])
    return TrainItem(f"pd:{pid}", "denoise", DENOISE.format(context=context), " ".join(span))


def sentgen_item(pid: str, text: str, rng: random.Random) -> TrainItem | None:
    """Predict the next (or previous) sentence of a real sentence."""
    sents = _sentences(text)
    if len(sents) < 2:
        return None
    i = rng.randrange(len(sents) - 1)
    if rng.random() < 0.5:
        return TrainItem(f"sg:{pid}", "sentgen", SENTGEN.format(context=sents[i], direction="next"), sents[i + 1])
    return TrainItem(f"sg:{pid}", "sentgen", SENTGEN.format(context=sents[i + 1], direction="previous"), sents[i])


def build_mix(examples: list[Example], cands: list[Candidates], corpus: Corpus, seed: int = 0,
              n_instruct: int | None = None, plain_share: float = 0.1, extra: list[TrainItem] = (),
              synthetic_each: int | None = None) -> list[TrainItem]:
    """The shuffled training mix: retrieval items + instruction items built from the corpus + `extra` items
    (the hub instruction sets) + ~`plain_share` plain text. Corpus-built items: by default `n_instruct` in all
    (reading comprehension first, then denoising and sentence generation alternating: the offline stand-in for
    the hub sets); with `synthetic_each` (the paper: 5,000) exactly that many phrase-denoising and as many
    sentence-generation items, and no reading items (the paper's sources are the hub sets and these two)."""
    rng = random.Random(seed)
    items = retrieval_items(examples, cands)
    rc = reading_items(examples, cands, corpus) if synthetic_each is None else []
    if synthetic_each is None:
        texts = [p for p in corpus.passages if len(_sentences(p.text)) >= 2]
        rng.shuffle(texts)
    else:  # a seeded sample of the corpus, large enough for both kinds and the plain text (21M passages: never all)
        n_plain = int(round(plain_share * (len(items) + 2 * synthetic_each + len(extra)) / (1 - plain_share)))
        pool = rng.sample(range(len(corpus)), min(len(corpus), 2 * (2 * synthetic_each + n_plain) + 1000))
        ids = corpus.ids
        texts = [p for p in corpus.get_many([ids[i] for i in pool]) if len(_sentences(p.text)) >= 2]
    n_instruct = len(items) if n_instruct is None else n_instruct
    want = {"denoise": synthetic_each, "sentgen": synthetic_each} if synthetic_each is not None else None
    synth, made = [], {"denoise": 0, "sentgen": 0}
    for p in texts:
        if want is None and len(synth) >= max(0, n_instruct - len(rc)):
            break
        if want is not None and made == want:
            break
        if want is None:  # alternating
            kind = "denoise" if len(synth) % 2 == 0 else "sentgen"
        else:  # denoising first, then sentence generation
            kind = "denoise" if made["denoise"] < want["denoise"] else "sentgen"
        item = (denoise_item if kind == "denoise" else sentgen_item)(p.id, p.text, rng)
        if item is not None:
            synth.append(item)
            made[kind] += 1
    mix = items + rc[:n_instruct] + synth + list(extra)
    n_plain = int(round(plain_share * len(mix) / (1 - plain_share)))
    used = {i.id.split(":", 1)[1] for i in synth}
    plain = [TrainItem(f"txt:{p.id}", "plain", "", p.as_text()) for p in texts if p.id not in used][:n_plain]
    mix += plain
    rng.shuffle(mix)
    return mix
