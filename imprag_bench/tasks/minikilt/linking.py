"""aida-like entity linking: real Wikipedia sentences, a marked mention, the linked corpus page title.

Contexts are real sentences from the lead sections; only the markers are added. Mentions are surface
forms that differ from the page title, found by rule (no human annotation):
* a country's demonym ("French" -> France) or multi-word alternative name ("French Republic" -> France), from
  countryinfo; a demonym shared by several countries goes to the most populous one only when it is at
  least 20 times larger (French -> France, not Réunion), else it is not used;
* a person's surname ("Einstein" -> Albert Einstein) when that surname ends exactly one People title, is
  used by no other title, and never occurs in lower case in the corpus (so not "More", "Born"); and only
  in the person's own lead or in a lead that names the person in full elsewhere (so not "Calvin cycle").
A mention must stand alone (no capitalised word right before or after it, no name particle such as "von"
before it), a demonym must not sit in a sentence about language ("The official language is Faroese"),
and the sentence must not contain the answer title itself.
Records are split by source page, so no context sentence is shared across splits.
"""
from __future__ import annotations

import random
import re
from collections import Counter

from imprag_bench.tasks.minikilt import sources
from imprag_bench.tasks.minikilt.sources import Country
from imprag_bench.tasks.minikilt.splits import FEWSHOT_TRAIN_N, split_records

CAPS = {"demonym": 8, "alt_name": 4, "surname": 2}   # at most this many examples per answer title
AMBIGUOUS_DEMONYMS = {"Congolese", "Dominican", "Channel Islander", "Fleming"}
_PARTICLES = {"von", "van", "de", "da", "di", "del", "der", "du", "la", "le", "ibn", "bin", "al", "el"}
_FUNCTION_WORDS = {"the", "a", "an", "in", "on", "at", "by", "for", "from", "as", "with", "during", "after",
                   "before", "under", "his", "her", "its", "their", "many", "some", "most", "other", "both",
                   "several", "early", "later", "while", "when", "although", "but", "and", "of", "to"}
_TITLE_STOP = {"of", "the", "ibn", "bin", "al", "el", "and"}
_LANGUAGE_WORDS = re.compile(r"\b(language|languages|speak|speaks|spoken|speakers|dialects?|words?)\b")


def country_mentions(countries: list[Country], titles: set[str]) -> dict[str, tuple[str, str]]:
    """surface form -> (country page title, mention type) for demonyms and alternative names."""
    groups: dict[str, list[Country]] = {}
    for c in countries:
        for d in c.demonyms:
            groups.setdefault(d, []).append(c)
    names = {c.name for c in countries}
    out: dict[str, tuple[str, str]] = {}
    for d in sorted(groups):
        g = sorted(groups[d], key=lambda c: (-c.population, c.iso2))
        if d in titles or d in names or d in AMBIGUOUS_DEMONYMS:
            continue
        if len(g) == 1 or g[0].population >= 20 * g[1].population:
            out[d] = (g[0].title, "demonym")
    for c in countries:
        for a in c.alt_names:                  # multi-word only: a bare "Congo" may be the river
            if " " in a and a not in titles and a not in names and a not in out:
                out[a] = (c.title, "alt_name")
    return out


def surname_mentions(wiki: list[dict]) -> dict[str, tuple[str, str]]:
    """surname -> (person page title, "surname") for unambiguous, non-word surnames of People titles."""
    titles = {w["title"] for w in wiki}
    tokens = Counter(t for title in titles for t in set(re.findall(r"[\w'-]+", title)))
    lower_words = set(re.findall(r"\b[a-z]+\b", " ".join(w["extract"] for w in wiki)))
    people = sorted(w["title"] for w in wiki if w["topic"] == "People")
    last = Counter(p.split()[-1] for p in people)
    out = {}
    for p in people:
        parts = p.split()
        if len(parts) < 2 or re.search(r"[(),.\d]", p) or _TITLE_STOP & {x.lower() for x in parts}:
            continue
        s = parts[-1]
        if re.fullmatch(r"[A-Z][a-z]{3,}", s) and last[s] == 1 and tokens[s] == 1 and s not in titles \
                and s.lower() not in lower_words:
            out[s] = (p, "surname")
    return out


def _stands_alone(sentence: str, start: int, end: int) -> bool:
    after = sentence[end:].lstrip()
    before = sentence[:start].split()
    if after[:1].isupper() or after.startswith(("language", "-")):
        return False
    if before:
        prev = before[-1]
        if prev.lower() in _PARTICLES or (prev[:1].isupper() and prev.lower() not in _FUNCTION_WORDS
                                          and not prev.endswith((",", ";", ":", '"'))):
            return False
    return True


def candidates(wiki: list[dict], mentions: dict[str, tuple[str, str]]) -> list[dict]:
    """The first valid mention of each lead sentence (8-60 words), in page/sentence order."""
    pat = re.compile(r"(?<![\w-])(?=[A-Z])(" + "|".join(re.escape(m) for m in sorted(mentions, key=lambda m: (-len(m), m)))
                     + r")(?![\w-])")
    out = []
    for page_no, w in enumerate(wiki):
        for k, sent in enumerate(sources.sentences(w["extract"])):
            if not 8 <= len(sent.split()) <= 60 or "[START]" in sent or "[END]" in sent:
                continue
            for m in pat.finditer(sent):
                title, kind = mentions[m.group(1)]
                if title in sent or not _stands_alone(sent, m.start(), m.end()):
                    continue
                if kind == "demonym" and _LANGUAGE_WORDS.search(sent):   # "Faroese" the language
                    continue
                if kind == "surname" and w["title"] != title and title not in w["extract"]:
                    continue                                            # "Calvin cycle": another Calvin
                context = f"{sent[:m.start()]}[START] {m.group(1)} [END]{sent[m.end():]}"
                out.append({"id": f"aida-{page_no}-{k}", "context": context, "mention": m.group(1),
                            "answers": [title], "mention_type": kind, "source_page": w["title"]})
                break
    return out


def aida_records(wiki: list[dict], countries: list[Country], seed: int) -> list[dict]:
    """Candidates capped per answer title (CAPS by mention type), chosen with a seeded shuffle."""
    titles = {w["title"] for w in wiki}
    mentions = {**surname_mentions(wiki), **country_mentions(countries, titles)}
    cands = candidates(wiki, mentions)
    random.Random(seed).shuffle(cands)
    used: Counter = Counter()
    out = []
    for c in cands:
        if used[c["answers"][0]] < CAPS[c["mention_type"]]:
            used[c["answers"][0]] += 1
            out.append(c)
    return out


def build(wiki: list[dict], countries: list[Country], seed: int) -> dict[str, list[dict]]:
    """aida-like splits, grouped by the page the sentence comes from."""
    return split_records(aida_records(wiki, countries, seed), lambda r: r["source_page"], seed,
                         train_n=FEWSHOT_TRAIN_N)
