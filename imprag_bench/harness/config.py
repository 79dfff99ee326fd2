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


# A comma starts a new option only where `key=` follows it; so FAISS factories and paths keep their commas.
_KEY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def scalar(text: str):
    """A bare option value typed as written: an int or float whose text is exactly how Python writes it
    (`10`, `-1`, `0.5`, not `007` or `1e5`), true/false -> bool, anything else the string itself.

    Deliberately narrower than YAML (where `yes`, `2024-01-01` or `0x10` change type), so that a string
    option always gets back exactly the text given; quoted values are never typed."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if repr(value) == text else text
    return text


def _needs_quotes(value: str) -> bool:
    return (value != value.strip() or not value or any(c.isspace() for c in value) or value[0] in "\"'"
            or re.search(r",\s*[A-Za-z_][A-Za-z0-9_]*\s*=", value) is not None or scalar(value) != value
            or value.endswith(","))


def format_value(value) -> str:
    """An option value as `SystemSpec.parse` reads it back (quoted where a bare value would not be)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise UserError(f"system option value {value!r} must be a string, number or true/false")
    if not _needs_quotes(value):
        return value
    quote = '"' if '"' not in value else "'"
    if quote in value:
        raise UserError(f"system option value {value!r} contains both quote characters; it cannot be written")
    return f"{quote}{value}{quote}"


@dataclass(frozen=True)
class SystemSpec:
    """A system name plus per-system options.

    Text form (`--systems`, presets): `name` or `name:key=value,key=value,...`
      - a comma separates options only where the text after it starts with `key=` (an identifier and '='),
        so values keep their own commas: `dense:index=IVF65536_HNSW32,PQ64,k=10` is index="IVF65536_HNSW32,PQ64"
        and k=10;
      - a value in double or single quotes is taken literally, for values that contain `,key=` or spaces:
        `imprag:checkpoint="runs/a,b=1"`;
      - bare values are typed: integers, decimals, true/false; anything else (paths, hub ids) is a string.
    Mapping form (presets only): `{name: dense, encoder: facebook/contriever-msmarco, index: "IVF65536_HNSW32,PQ64"}`.

    The label (the `system` column of the leaderboard) is the `label=` option, else the text itself (stripped),
    else, for a mapping, the text form it is written as (`{name: dense, query: oracle}` -> `dense:query=oracle`).
    Which keys and values a system accepts is checked separately (imprag_bench.harness.options.validate)."""

    name: str
    options: dict
    label: str

    @classmethod
    def parse(cls, text: str) -> "SystemSpec":
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name:
            raise UserError(f"system spec {text!r} has no system name (expected name or name:key=value,...)")
        opts: dict = {}
        i, rest = 0, rest.rstrip()
        while i < len(rest):
            m = _KEY.match(rest, i)
            if not m:
                bad = rest[i:].split(",", 1)[0].strip()
                raise UserError(f"system option {bad!r} in {text!r} must be key=value "
                                "(quote values that contain ',key=': key=\"...\")")
            key, i = m.group(1), m.end()
            while i < len(rest) and rest[i] in " \t":
                i += 1
            if i < len(rest) and rest[i] in "\"'":
                close = rest.find(rest[i], i + 1)
                if close < 0:
                    raise UserError(f"system option {key!r} in {text!r}: unterminated quote {rest[i]}")
                value, i = rest[i + 1:close], close + 1
                while i < len(rest) and rest[i] in " \t":
                    i += 1
                if i < len(rest) and rest[i] != ",":
                    raise UserError(f"system option {key!r} in {text!r}: text after the closing quote")
            else:
                j = i
                while True:  # the value runs to the next comma that starts `key=`, or to the end
                    j = rest.find(",", j)
                    if j < 0 or _KEY.match(rest, j + 1) or not rest[j + 1:].strip():
                        break
                    j += 1
                j = len(rest) if j < 0 else j
                raw, i = rest[i:j].strip(), j
                if not raw:
                    raise UserError(f"system option {key!r} in {text!r} has no value")
                value = scalar(raw)
            if key in opts:
                raise UserError(f"system option {key!r} is given twice in {text!r}")
            opts[key] = value
            if i < len(rest):  # at a separating comma
                i += 1
                if not rest[i:].strip():
                    break
        return cls(name, opts, str(opts.get("label", text.strip())))

    @classmethod
    def from_config(cls, entry) -> "SystemSpec":
        """A spec from a preset or CLI entry: the text form, or a mapping with `name` and the options."""
        if isinstance(entry, str):
            return cls.parse(entry)
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise UserError(f"system entry {entry!r} must be a spec string or a mapping with a 'name'")
        opts = {str(k): v for k, v in entry.items() if k != "name"}
        bad = [k for k in opts if not _KEY.fullmatch(f"{k}=")]
        if bad:
            raise UserError(f"system entry {entry!r}: option name {bad[0]!r} is not an identifier")
        text = entry["name"].strip() + (":" + ",".join(f"{k}={format_value(v)}" for k, v in opts.items())
                                        if opts else "")
        return cls(entry["name"].strip(), opts, str(opts.get("label", text)))

    @property
    def slug(self) -> str:
        """File-name-safe form of the label."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label)
