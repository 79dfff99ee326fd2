"""System-spec syntax (values keep their commas, quoting, mapping entries, stable labels) and per-system option
validation (imprag_bench.harness.options)."""
import pytest
import yaml

from imprag_bench.harness.config import SystemSpec, format_value, scalar
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.options import Option, RUN_OPTIONS, accepted, validate
from imprag_bench.harness.registry import SYSTEMS


@pytest.mark.parametrize("text, name, options", [
    ("bm25", "bm25", {}),
    ("dense:query=oracle,k=10", "dense", {"query": "oracle", "k": 10}),
    ("dense:encoder=facebook/contriever-msmarco,index=IVF65536_HNSW32,PQ64", "dense",
     {"encoder": "facebook/contriever-msmarco", "index": "IVF65536_HNSW32,PQ64"}),
    ("dense:index=OPQ16_64,IVF65536_HNSW32,PQ16x4fsr,query=oracle", "dense",
     {"index": "OPQ16_64,IVF65536_HNSW32,PQ16x4fsr", "query": "oracle"}),
    ('dense:index="IVF65536_HNSW32,PQ64",k=3', "dense", {"index": "IVF65536_HNSW32,PQ64", "k": 3}),
    ("imprag:checkpoint='runs/a,b=1 c', k = 3,", "imprag", {"checkpoint": "runs/a,b=1 c", "k": 3}),
    ('imprag:k="3",bf16=true,l_max=64', "imprag", {"k": "3", "bf16": True, "l_max": 64}),
    ("imprag:checkpoint=007,label=1e5", "imprag", {"checkpoint": "007", "label": "1e5"}),
])
def test_parse(text, name, options):
    s = SystemSpec.parse(text)
    assert (s.name, s.options) == (name, options)


def _old_parse(text):
    """The parser before issue 12 (split on every comma, YAML values), as the reference for old specs."""
    name, _, rest = text.partition(":")
    opts = {}
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        opts[key.strip()] = yaml.safe_load(value.strip())
    return name.strip(), opts, str(opts.get("label", text.strip()))


@pytest.mark.parametrize("text", [  # preset specs and the labels in the committed results/ leaderboards
    "closed-book", "bm25", "bm25:query=oracle", "dense", "dense:query=oracle", "imprag", "dense:query=oracle,k=10",
    "imprag:checkpoint=runs/train/imprag-quick/checkpoint,bf16=true", "imprag:l_max=64,bf16=true",
    "imprag:checkpoint=a/b,label=imprag-quick", "ra-dit:checkpoint=runs/x/reader/checkpoint,query=oracle",
])
def test_existing_specs_keep_their_options_and_label(text):
    s = SystemSpec.parse(text)
    assert (s.name, s.options, s.label) == _old_parse(text)


def test_label_and_slug():
    s = SystemSpec.parse("dense:query=oracle,k=10")
    assert (s.label, s.slug) == ("dense:query=oracle,k=10", "dense_query_oracle_k_10")
    assert SystemSpec.parse("imprag:checkpoint=a/b,label=imprag-quick").label == "imprag-quick"


@pytest.mark.parametrize("entry, label", [
    ({"name": "dense", "query": "oracle"}, "dense:query=oracle"),
    ({"name": "bm25"}, "bm25"),
    ({"name": "dense", "encoder": "facebook/contriever-msmarco", "index": "IVF65536_HNSW32,PQ64"},
     "dense:encoder=facebook/contriever-msmarco,index=IVF65536_HNSW32,PQ64"),
    ({"name": "imprag", "checkpoint": "runs/a,b=1 c", "k": 3, "bf16": True, "label": "007"}, "007"),
])
def test_mapping_entries_round_trip_through_the_text_form(entry, label):
    s = SystemSpec.from_config(entry)
    assert s.label == label and s.options == {k: v for k, v in entry.items() if k != "name"}
    text = s.name + (":" + ",".join(f"{k}={format_value(v)}" for k, v in s.options.items()) if s.options else "")
    assert SystemSpec.parse(text).options == s.options


@pytest.mark.parametrize("value", ["007", "1e5", "true", "10", "a,b=1", " x", 'say "hi"', "", "x,"])
def test_format_value_reads_back_as_the_same_string(value):
    assert SystemSpec.parse(f"s:v={format_value(value)}").options["v"] == value


def test_scalar_types_only_what_round_trips():
    assert [scalar(t) for t in ("10", "-1", "0.5", "True", "007", "1e5", "1.50", "yes")] == \
        [10, -1, 0.5, True, "007", "1e5", "1.50", "yes"]


@pytest.mark.parametrize("entry", [{"query": "oracle"}, {"name": ""}, ["dense"], {"name": "dense", "bad key": 1}])
def test_bad_mapping_entries(entry):
    with pytest.raises(UserError):
        SystemSpec.from_config(entry)


def test_every_registered_system_declares_its_options():
    for name in SYSTEMS.names():
        if name != "echo":  # the test double in tests/toy.py
            assert accepted(SYSTEMS.get(name)) is not None, name


def test_validate_converts_to_declared_types_and_accepts_run_wide_settings(tmp_path):
    got = validate("imprag", {"k": "10", "bf16": "yes", "checkpoint": str(tmp_path), "model": "smollm2-135m",
                              "dtype": "bfloat16", "device": "cuda:1", "label": 7})
    assert got == {"k": 10, "bf16": True, "checkpoint": str(tmp_path), "model": "smollm2-135m",
                   "dtype": "bfloat16", "device": "cuda:1", "label": "7"}


@pytest.mark.parametrize("system, options, message", [
    ("bm25", {"quey": "oracle"}, "unknown option 'quey'; did you mean 'query'? (accepted: batch_size, checkpoint"),
    ("dense", {"zzz": 1}, "unknown option 'zzz' (accepted:"),
    ("bm25", {"query": "orcle"}, "option query='orcle' must be one of prompt, oracle; did you mean 'oracle'?"),
    ("imprag", {"bf16": "maybe"}, "option bf16='maybe' must be true, false or auto"),
    ("imprag", {"b": -1}, "option b=-1 must be at least 0"),
    ("imprag", {"k": True}, "option k=True must be an integer"),
    ("dense", {"encoder": True}, "option encoder=True must be a string"),
    ("ra-it", {}, "needs checkpoint=<folder>"),
    ("closed-book", {"dtype": "fp16"}, "must be one of auto, float32, bfloat16, float16"),
])
def test_validate_refuses_with_the_accepted_keys(system, options, message):
    with pytest.raises(UserError) as e:
        validate(system, options, f"{system}:...")
    assert message in str(e.value) and f"system {system!r}" in str(e.value)


def test_undeclared_factory_accepts_any_key_but_checks_run_wide_settings():
    import tests.toy  # noqa: F401  (registers echo, which declares nothing)
    assert validate("echo", {"anything": 1}) == {"anything": 1}
    with pytest.raises(UserError, match="dtype"):
        validate("echo", {"dtype": "int4"})


def test_option_describe_for_the_systems_listing():
    assert RUN_OPTIONS["k"].describe() == "int (default 5): passages retrieved and read"
    assert Option(str, None, "x", folder=True, required=True).describe() == "folder (required): x"


def test_mapping_entry_and_comma_value_run_end_to_end(tmp_path):
    """A preset's mapping entry and a text spec whose value has a comma both run, each under its own label."""
    import tests.toy  # noqa: F401
    from imprag_bench.harness.config import load_preset
    from imprag_bench.harness.runner import run
    cfg = {**load_preset("quick"), "tasks": ["toy"], "corpus": "toy", "fewshot": 0, "n": 2, "k": 1,
           "out": str(tmp_path / "run"),
           "systems": [{"name": "echo", "index": "IVF4,Flat"}, "echo:index=IVF4,PQ2,label=echo-pq"]}
    out = run(cfg)
    assert sorted(p.name for p in (out / "preds").iterdir()) == ["echo-pq", "echo_index_IVF4_Flat"]


def test_cli_splits_specs_on_whitespace_outside_quotes():
    from imprag_bench.harness.cli import _split_specs
    assert _split_specs('bm25  dense:index="a b",k=3 imprag:checkpoint=\'it"s here\'') == \
        ["bm25", 'dense:index="a b",k=3', "imprag:checkpoint='it\"s here'"]
    assert SystemSpec.parse(_split_specs('dense:index="a b",k=3')[0]).options == {"index": "a b", "k": 3}
