"""hotpotqa-like and 2wiki-like two-hop questions, templated over real country/city facts.

The facts are real (countryinfo, geonames); the questions are templates. The two tasks use different
relation chains:

* hotpotqa (bridge via the capital or a city, then an attribute of the country):
  capital -> country -> currency / official language; city -> country -> currency / official language.
* 2wiki (2WikiMultiHopQA's question types): compositional city -> country -> capital; inference
  country -> neighbour -> capital; comparison "which city is larger"; bridge-comparison "are A and B in
  the same country".

Splits are by country: every question is about one country (or two cities of countries in the same split),
so no subject entity appears in two splits of a task.
"""
from __future__ import annotations

import random

from imprag_bench.tasks.minikilt.corpus import is_capital
from imprag_bench.tasks.minikilt.sources import City, Country, dedupe, normalize
from imprag_bench.tasks.minikilt.splits import FEWSHOT_TRAIN_N, SPLITS, assign_groups, sample, split_records

CITIES_PER_COUNTRY = 6


def question_cities(cities: list[City], countries: list[Country], per_country: int = CITIES_PER_COUNTRY,
                    capitals: bool = False) -> dict[str, list[City]]:
    """iso2 -> up to `per_country` of its largest cities whose names are unambiguous (capitals optional)."""
    by_iso = {c.iso2: c for c in countries}
    out: dict[str, list[City]] = {c.iso2: [] for c in countries}
    for city in cities:                                  # already sorted by population, desc
        if city.unique and (capitals or not is_capital(city, by_iso[city.iso2])) \
                and len(out[city.iso2]) < per_country:
            out[city.iso2].append(city)
    return out


def unique_capitals(countries: list[Country]) -> set[str]:
    """Capitals that name exactly one country (also after normalisation: not Basseterre vs Basse-Terre)
    and differ from the country's name (usable as a bridge or subject)."""
    seen: dict[str, int] = {}
    for c in countries:
        seen[normalize(c.capital)] = seen.get(normalize(c.capital), 0) + 1
    return {c.capital for c in countries if seen[normalize(c.capital)] == 1 and c.capital != c.name}


def build_hotpot(countries: list[Country], cities: list[City], seed: int) -> dict[str, list[dict]]:
    """hotpotqa-like splits, grouped by bridge country; train keeps everything not in test/dev."""
    return split_records(hotpot_records(countries, cities), lambda r: r["country"], seed)


def _currency_answers(c: Country) -> list[str]:
    return dedupe(a for cur in c.currencies for a in cur)


def _language_answers(c: Country) -> list[str]:
    return dedupe(a for lang in c.languages for a in lang)


def hotpot_records(countries: list[Country], cities: list[City]) -> list[dict]:
    """All hotpotqa-like questions (field `country` = the bridge entity's ISO code, used for splitting)."""
    caps, qcities = unique_capitals(countries), question_cities(cities, countries, per_country=8)
    out = []

    def add(c: Country, subj: str, sid: str, chain: str, q: str, answers: list[str]):
        out.append({"id": f"hotpotqa-{chain}-{sid}", "question": q, "answers": answers, "chain": chain,
                    "subject": subj, "bridge": c.name, "country": c.iso2, "hops": 2})

    for c in countries:
        if c.capital in caps:
            if c.currencies:
                add(c, c.capital, c.iso2, "capital-currency",
                    f"What is the currency of the country whose capital is {c.capital}?", _currency_answers(c))
            if c.languages:
                add(c, c.capital, c.iso2, "capital-language",
                    f"What is an official language of the country whose capital is {c.capital}?",
                    _language_answers(c))
        for city in qcities[c.iso2]:
            if c.currencies:
                add(c, city.name, city.id, "city-currency",
                    f"What currency is used in the country where the city of {city.name} is located?",
                    _currency_answers(c))
            if c.languages:
                add(c, city.name, city.id, "city-language",
                    f"What is an official language of the country in which {city.name} lies?",
                    _language_answers(c))
    return out


def _single_2wiki(countries: list[Country], cities: list[City]) -> list[dict]:
    by_iso = {c.iso2: c for c in countries}
    qcities = question_cities(cities, countries)
    out = []
    for c in countries:
        for city in qcities[c.iso2]:
            out.append({"id": f"2wiki-compositional-{city.id}", "type": "compositional", "country": c.iso2,
                        "question": f"What is the capital of the country where {city.name} is located?",
                        "answers": list(c.capital_aliases), "subject": city.name, "bridge": c.name, "hops": 2})
        if c.borders:
            answers = dedupe(a for b in c.borders for a in by_iso[b].capital_aliases)
            out.append({"id": f"2wiki-inference-{c.iso2}", "type": "inference", "country": c.iso2,
                        "question": f"What is the capital of a country that shares a border with {c.name}?",
                        "answers": answers, "subject": c.name, "bridge": "neighbour", "hops": 2})
    return out


def _pairs_2wiki(isos: list[str], qcities: dict[str, list[City]], by_iso: dict[str, Country], n: int,
                 rng: random.Random) -> list[dict]:
    """Up to n comparison and bridge-comparison questions over cities of the given countries."""
    pool = sorted((c for iso in isos for c in qcities[iso]), key=lambda c: int(c.id))
    out, used = [], set()
    for _ in range(20 * n):
        if len(out) >= n or len(pool) < 2:
            break
        a, b = rng.sample(pool, 2)
        key = tuple(sorted((a.id, b.id)))
        if key in used:
            continue
        if len(out) % 2 == 0:                               # comparison: clearly different sizes
            if max(a.population, b.population) < 1.25 * min(a.population, b.population):
                continue
            big = a if a.population > b.population else b
            out.append({"id": f"2wiki-comparison-{key[0]}-{key[1]}", "type": "comparison",
                        "question": f"Which city has the larger population, {a.name} or {b.name}?",
                        "answers": [big.name], "subject": f"{a.name} | {b.name}", "hops": 2})
        else:                                                # bridge comparison, balanced yes/no
            want_same = len(out) % 4 == 1
            if want_same:
                same = [c for c in qcities[a.iso2] if c.id != a.id]
                if not same:
                    continue
                b = rng.choice(same)
                key = tuple(sorted((a.id, b.id)))
                if key in used:
                    continue
            elif a.iso2 == b.iso2:
                continue
            out.append({"id": f"2wiki-samecountry-{key[0]}-{key[1]}", "type": "bridge_comparison",
                        "question": f"Are {a.name} and {b.name} located in the same country?",
                        "answers": ["yes" if a.iso2 == b.iso2 else "no"], "subject": f"{a.name} | {b.name}",
                        "bridge": f"{by_iso[a.iso2].name} | {by_iso[b.iso2].name}", "hops": 2})
        used.add(key)
    return out


def build_2wiki(countries: list[Country], cities: list[City], seed: int) -> dict[str, list[dict]]:
    """2wiki-like splits: countries are assigned to splits first, then pair questions are drawn within."""
    by_iso = {c.iso2: c for c in countries}
    qcities = question_cities(cities, countries)
    singles = _single_2wiki(countries, cities)
    counts: dict[str, int] = {c.iso2: 0 for c in countries}
    for r in singles:
        counts[r["country"]] += 1
    where = assign_groups(counts, seed, test_n=200, dev_n=140)
    rng = random.Random(seed)
    caps = {"train": FEWSHOT_TRAIN_N, "dev": 200, "test": 300}
    out = {}
    for i, split in enumerate(SPLITS):
        isos = sorted(iso for iso, s in where.items() if s == split)
        recs = [r for r in singles if where[r["country"]] == split]
        pairs = _pairs_2wiki(isos, qcities, by_iso, max(caps[split] // 2, len(recs)), rng)
        out[split] = sample(recs + pairs, caps[split], seed + i)
    return out
