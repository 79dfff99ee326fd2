"""Training presets as data: typed configs refuse unknown keys and wrong types, system files cannot touch the
shared budget, and the paper's recipe carries no additions."""
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.training import config as C
from imprag_bench.imprag.train import ImpRAGTrainConfig

SHARED = {"quick": {"additions": ["small-budget"], "steps": 3}, "full": {}, "paper": {"additions": []}}


def with_files(monkeypatch, files: dict):
    monkeypatch.setattr(C, "_read_yaml", lambda name: files[name])


def load(budget="quick", recipe=None, overrides=None):
    return C.load_train_preset("sys", budget, ImpRAGTrainConfig, overrides=overrides, recipe=recipe)


def test_budget_then_recipe_then_overrides(monkeypatch):
    with_files(monkeypatch, {"shared": SHARED, "sys": {"quick": {"cpu-additions": {"additions": ["stage0"],
                                                                                  "stage0_steps": 5},
                                                                "paper": {}}}})
    cfg = load(overrides=["lr=0.5", "tasks=[nq]"])
    assert (cfg.recipe, cfg.default_recipe, cfg.steps, cfg.stage0_steps, cfg.lr) == ("cpu-additions", "cpu-additions",
                                                                                     3, 5, 0.5)
    assert cfg.additions == ["small-budget", "stage0"] and cfg.tasks == ["nq"]
    paper = load(recipe="paper")
    assert paper.additions == ["small-budget"] and paper.stage0_steps == 0


@pytest.mark.parametrize("files,overrides,message", [
    ({"quick": {"paper": {"stepz": 1}}}, None, "unknown setting 'stepz'"),
    ({"quick": {"paper": {"steps": 9}}}, None, "belong to presets/train/shared.yaml"),
    ({"quick": {"paper": {"additions": ["stage0"]}}}, None, "paper recipe cannot carry additions"),
    ({"quick": {"cpu": {"additions": ["magic"]}}}, None, "unknown additions ['magic']"),
    ({"quick": {"paper": {}}}, ["lr=fast"], "lr='fast' is not a float"),
    ({"quick": {"paper": {}}}, ["n_reed=2"], "did you mean 'n_read'"),
    ({"quick": {"paper": {}}}, ["recipe=cpu"], "--recipe"),
    ({"full": {"paper": {}}}, None, "no recipe for budget 'quick'"),
])
def test_bad_presets_are_refused_with_one_clear_message(monkeypatch, files, overrides, message):
    with_files(monkeypatch, {"shared": SHARED, "sys": files})
    with pytest.raises(UserError) as e:
        load(overrides=overrides)
    assert message in str(e.value)


def test_unknown_budget_suggests_the_nearest():
    with pytest.raises(UserError, match="did you mean 'quick'"):
        C.load_train_preset("imprag", "quik", ImpRAGTrainConfig)
