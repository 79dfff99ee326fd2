"""The mini-KILT knowledge corpus: real Wikipedia lead sections plus infobox-style fact passages.

* `wiki:<n>`: the 10,033 lead sections, verbatim (n = position in title order).
* `country:<ISO2>:geo` and `country:<ISO2>:people`: two templated infobox passages per country, from
  countryinfo/geonames facts (geography: capital, continent, region, borders, population; people and
  economy: currency, official languages, demonym). The facts are split over two passages on purpose, so
  that the two-hop questions ("the currency of the country whose capital is X") need two passages.
* `city:<geonameid>`: one templated passage per city of at least 200,000 inhabitants (country, continent,
  population, capital status).
"""
from __future__ import annotations

from imprag_bench.tasks.minikilt.sources import City, Country


def _join(items: list[str]) -> str:
    return ", ".join(items)


def wiki_passages(wiki: list[dict]) -> list[dict]:
    """One passage per lead section; the text is the lead's extract, untouched."""
    return [{"id": f"wiki:{i}", "title": w["title"], "text": w["extract"].strip()} for i, w in enumerate(wiki)]


def country_passages(countries: list[Country]) -> list[dict]:
    """Two infobox-style passages per country (geography; people and economy)."""
    by_iso = {c.iso2: c for c in countries}
    out = []
    for c in countries:
        geo = [f"Country. Capital: {c.capital}.", f"Continent: {c.continent}."]
        if c.region:
            geo.append(f"Region: {c.region}.")
        if c.subregion:
            geo.append(f"Subregion: {c.subregion}.")
        if c.borders:
            geo.append(f"Borders: {_join([by_iso[b].name for b in c.borders])}.")
        if c.population:
            geo.append(f"Population: {c.population:,}.")
        out.append({"id": f"country:{c.iso2}:geo", "title": c.title, "text": " ".join(geo)})
        people = ["Country."]
        if c.currencies:
            people.append("Currency: " + _join([f"{cur[0]} ({cur[-1]})" for cur in c.currencies]) + ".")
        if c.languages:
            people.append(f"Official languages: {_join([lang[0] for lang in c.languages])}.")
        if c.demonym:
            people.append(f"Demonym: {_join(c.demonyms)}.")
        if len(people) > 1:
            out.append({"id": f"country:{c.iso2}:people", "title": c.title, "text": " ".join(people)})
    return out


def is_capital(city: City, country: Country) -> bool:
    """Whether the city is its country's capital (by name)."""
    return city.name in country.capital_aliases


def city_passages(cities: list[City], countries: list[Country]) -> list[dict]:
    """One passage per large city: '<name> is a city in <country>, <continent>. Population: N.'"""
    by_iso = {c.iso2: c for c in countries}
    out = []
    for city in cities:
        c = by_iso[city.iso2]
        text = f"{city.name} is a city in {c.name}, {c.continent}. Population: {city.population:,}."
        if is_capital(city, c):
            text += f" It is the capital of {c.name}."
        out.append({"id": f"city:{city.id}", "title": city.name, "text": text})
    return out


def build_corpus(wiki: list[dict], countries: list[Country], cities: list[City]) -> list[dict]:
    """All passages: Wikipedia leads first (so a `limit` keeps real text), then countries, then cities."""
    return wiki_passages(wiki) + country_passages(countries) + city_passages(cities, countries)
