"""trex-like and zsre-like slot filling and fever-like claims, templated over real country/city facts.

Facts are real (countryinfo, geonames); relation phrases and claim sentences are templates. The two slot
tasks use disjoint relation sets (trex: capital, capital of, continent, country; zsre: currency, official
language, demonym, subregion, shares border with). FEVER claims state a true fact (SUPPORTS) or the same
fact with its object swapped for another entity of the same type (REFUTES), labels exactly balanced.
All three split by subject country (a city counts as its country), so no subject crosses splits.
"""
from __future__ import annotations

import random

from imprag_bench.tasks.minikilt.multihop import question_cities, unique_capitals
from imprag_bench.tasks.minikilt.sources import City, Country, dedupe
from imprag_bench.tasks.minikilt.splits import FEWSHOT_TRAIN_N, split_records


def _slot(task: str, rel: str, sid: str, entity: str, answers: list[str], country: str) -> dict:
    return {"id": f"{task}-{rel.replace(' ', '_')}-{sid}", "entity": entity, "relation": rel,
            "answers": dedupe(answers), "country": country}


def trex_records(countries: list[Country], cities: list[City]) -> list[dict]:
    """capital (country -> city), capital of (city -> country), continent, country (city -> country)."""
    caps, qcities = unique_capitals(countries), question_cities(cities, countries, capitals=True)
    out = []
    for c in countries:
        out.append(_slot("trex", "capital", c.iso2, c.name, c.capital_aliases, c.iso2))
        if c.capital not in caps:            # an ambiguous capital must not become a "country" subject
            qcities[c.iso2] = [x for x in qcities[c.iso2] if x.name != c.capital]
        if c.capital in caps:
            out.append(_slot("trex", "capital of", c.iso2, c.capital, c.aliases, c.iso2))
        alt = [c.region] if c.region and c.region not in c.continent else []
        out.append(_slot("trex", "continent", c.iso2, c.name, [c.continent, *alt], c.iso2))
        for city in qcities[c.iso2]:
            out.append(_slot("trex", "country", city.id, city.name, c.aliases, c.iso2))
    return out


def zsre_records(countries: list[Country]) -> list[dict]:
    """currency, official language, demonym, subregion, shares border with (all country subjects)."""
    by_iso = {c.iso2: c for c in countries}
    out = []
    for c in countries:
        facts = [("currency", [a for cur in c.currencies for a in cur]),
                 ("official language", [a for lang in c.languages for a in lang]),
                 ("demonym", c.demonyms), ("subregion", [c.subregion] if c.subregion else []),
                 ("shares border with", [a for b in c.borders for a in by_iso[b].aliases])]
        out += [_slot("zsre", rel, c.iso2, c.name, ans, c.iso2) for rel, ans in facts if ans]
    return out


def build_slots(task: str, countries: list[Country], cities: list[City], seed: int) -> dict[str, list[dict]]:
    """Splits for "trex" or "zsre" (unseen tasks: few-shot train pool), grouped by subject country."""
    recs = trex_records(countries, cities) if task == "trex" else zsre_records(countries)
    return split_records(recs, lambda r: r["country"], seed, train_n=FEWSHOT_TRAIN_N)


def _fever_facts(countries: list[Country], cities: list[City]) -> list[dict]:
    """(relation, subject, true object, candidate false objects, claim template) per real fact."""
    by_iso = {c.iso2: c for c in countries}
    qcities = question_cities(cities, countries, per_country=3)
    out = []

    def fact(rel, sid, c, true, pool, template, subject=None):
        false = sorted({x for x in pool if x and x not in true})
        if false:
            out.append({"id": f"fever-{rel}-{sid}", "relation": rel, "country": c.iso2,
                        "subject": subject or c.name,
                        "true": true[0], "false": false, "template": template})

    for c in countries:
        near = [o for o in countries if o.continent == c.continent and o.iso2 != c.iso2]
        fact("capital", c.iso2, c, c.capital_aliases, [o.capital for o in near], "{o} is the capital of {s}.")
        fact("continent", c.iso2, c, [c.continent], [o.continent for o in countries],
             "{s} is located in {o}.")
        if c.currencies:
            fact("currency", c.iso2, c, [cur[0] for cur in c.currencies],
                 [cur[0] for o in near for cur in o.currencies], "The official currency of {s} is the {o}.")
        if c.languages:
            fact("language", c.iso2, c, [lang[0] for lang in c.languages],
                 [lang[0] for o in near for lang in o.languages], "{o} is an official language of {s}.")
        if c.borders:
            fact("border", c.iso2, c, [by_iso[b].name for b in c.borders],
                 [o.name for o in near if o.iso2 not in c.borders], "{s} shares a land border with {o}.")
        for city in qcities[c.iso2]:
            fact("city", city.id, c, [c.name], [o.name for o in near], "{s} is a city in {o}.", city.name)
    return out


def build_fever(countries: list[Country], cities: list[City], seed: int) -> dict[str, list[dict]]:
    """fever-like splits: one claim per fact; within each split labels alternate, so they are balanced."""
    splits = split_records(_fever_facts(countries, cities), lambda r: r["country"], seed,
                           train_n=FEWSHOT_TRAIN_N)
    rng = random.Random(seed)
    out = {}
    for split, facts in splits.items():
        recs = []
        for i, f in enumerate(facts):
            supports = i % 2 == 0
            obj = f["true"] if supports else rng.choice(f["false"])
            recs.append({"id": f["id"], "statement": f["template"].format(s=f["subject"], o=obj),
                         "answers": ["SUPPORTS" if supports else "REFUTES"], "relation": f["relation"],
                         "subject": f["subject"]})
        out[split] = recs
    return out
