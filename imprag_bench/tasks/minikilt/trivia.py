"""nq-like and simpleqa-like open-domain QA from the real Red-DiscordBot trivia lists (disjoint lists).

Questions and answer aliases are real (human-written trivia), deduplicated by normalised question text;
the only edits are whitespace squashing and dropping a leading "[Category]" tag.
Test and dev take only questions with some answer alias in the corpus (the analogue of KILT's provenance);
train keeps the rest. Every record says `answer_in_corpus` so the fraction can be reported.
"""
from __future__ import annotations

import re

from imprag_bench.tasks.minikilt import sources
from imprag_bench.tasks.minikilt.splits import FEWSHOT_TRAIN_N, split_records

NQ_LISTS = ("general", "entertainment", "artandliterature", "music", "sports", "worldcup")
SIMPLEQA_LISTS = ("worldcapitals", "geography", "elements", "greekmyth", "computers", "2016", "2015",
                  "usstateabbreviations", "uscapitals")   # not "slogans": a bare slogan is no question
_IMAGE = re.compile(r"https?://|\.(png|jpe?g|gif|svg|webp)\b", re.I)
_TAG = re.compile(r"^\[[^\]]{1,30}\]\s*")            # "[Acronyms]What does ISP stand for?"


class AnswerIndex:
    """Finds which answer strings occur, normalised and word-bounded, in some passage (title + text)."""

    def __init__(self, passages: list[dict]):
        self._docs = [sources.normalize(p["title"] + " " + p["text"]).split() for p in passages]

    def present(self, aliases) -> set[str]:
        """The subset of `aliases` whose normalised form occurs as a word sequence in some passage.

        One pass over the corpus tokens, looking candidates up by their first token (much faster than
        one substring search per alias).
        """
        by_first: dict[str, set[tuple[str, ...]]] = {}
        norm = {a: tuple(sources.normalize(a).split()) for a in aliases}
        for toks in norm.values():
            if toks:
                by_first.setdefault(toks[0], set()).add(toks)
        found: set[tuple[str, ...]] = set()
        for doc in self._docs:
            for i, tok in enumerate(doc):
                for cand in by_first.get(tok, ()):
                    if cand not in found and tuple(doc[i:i + len(cand)]) == cand:
                        found.add(cand)
        return {a for a, toks in norm.items() if toks in found}


def trivia_records(task: str, lists: tuple[str, ...], index: AnswerIndex) -> list[dict]:
    """Raw records for one trivia-based task: deduplicated, no image questions, no empty answers."""
    out, by_norm = [], {}
    for k, (name, question, answers) in enumerate(sources.load_trivia(lists)):
        question = " ".join(_TAG.sub("", question).split())
        answers = [a for a in answers if sources.normalize(a)]
        key = sources.normalize(question)
        if not answers or not key or _IMAGE.search(question):
            continue
        if key in by_norm:                      # the same question twice: merge its aliases
            rec = by_norm[key]
            rec["answers"] += [a for a in answers if a not in rec["answers"]]
            continue
        rec = {"id": f"{task}-{name}-{k}", "question": question, "answers": answers, "source": name}
        by_norm[key] = rec
        out.append(rec)
    present = index.present({a for rec in out for a in rec["answers"]})
    for rec in out:
        rec["answer_in_corpus"] = any(a in present for a in rec["answers"])
    return out


def build(task: str, index: AnswerIndex, seed: int) -> tuple[dict[str, list[dict]], dict]:
    """Splits for "nq" (seen: large train) or "simpleqa" (unseen: few-shot train pool), and pool stats
    (questions kept after cleaning, fraction with an answer alias in the corpus)."""
    lists, train_n = {"nq": (NQ_LISTS, None), "simpleqa": (SIMPLEQA_LISTS, FEWSHOT_TRAIN_N)}[task]
    recs = trivia_records(task, lists, index)
    in_corpus = {sources.normalize(r["question"]) for r in recs if r["answer_in_corpus"]}
    pool = {"lists": list(lists), "questions": len(recs),
            "answer_in_corpus": round(sum(r["answer_in_corpus"] for r in recs) / max(len(recs), 1), 4)}
    return split_records(recs, lambda r: sources.normalize(r["question"]), seed, train_n=train_n,
                         eligible=lambda g: g in in_corpus), pool
