"""Every shipped run preset loads, and each of its system specs parses and validates (no model is loaded)."""
from importlib import resources

import pytest

from imprag_bench.harness.config import PRESETS, SystemSpec, load_preset
from imprag_bench.harness.options import validate, validate_run
from imprag_bench.harness.registry import TASKS

SHIPPED = sorted(p.name[:-len(".yaml")] for p in resources.files("imprag_bench.harness.presets").iterdir()
                 if p.name.endswith(".yaml"))
RUN_WIDE = ("model", "k", "batch_size", "max_new_tokens", "seed", "device", "dtype")  # as runner.run passes them


def test_every_shipped_preset_is_selectable():
    assert SHIPPED == sorted(PRESETS)


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_loads_and_its_systems_validate(name):
    cfg = load_preset(name)
    validate_run(cfg)
    for task in cfg["tasks"]:
        TASKS.get(task)
    base = {k: cfg[k] for k in RUN_WIDE if k in cfg}
    specs = [SystemSpec.from_config(s) for s in cfg["systems"]]
    assert specs and len({s.slug for s in specs}) == len(specs)
    for s in specs:
        validate(s.name, {**base, **s.options}, s.label)


def test_paper_preset_keeps_the_ivf_pq_factory_whole():
    specs = {s.name: s for s in map(SystemSpec.from_config, load_preset("paper")["systems"])}
    dense = specs["dense"]
    assert dense.options == {"encoder": "facebook/contriever-msmarco", "index": "IVF65536_HNSW32,PQ64"}
    assert dense.label == "dense:encoder=facebook/contriever-msmarco,index=IVF65536_HNSW32,PQ64"
