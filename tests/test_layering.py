"""The one-way flow by design: harness <- tasks <- {imprag, baselines}. No module imports a higher floor (nor
imprag and baselines each other), anywhere in the file: top-level and function-level imports and the module
names given to importlib.import_module as strings. The harness reaches the floors above through its registries
(harness.registry: TASKS, CORPORA, SYSTEMS, TRAINERS, LOADERS), filled by the entry-point modules."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "imprag_bench"
FLOOR = {"harness": 0, "tasks": 1, "imprag": 2, "baselines": 2}


def floor_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "imprag_bench" and parts[1] in FLOOR else None


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("imprag_bench."):
            out.append((node.lineno, node.value))  # import_module("imprag_bench.x.y") and the like
    return out


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mine = floor_of("imprag_bench." + ".".join(path.relative_to(PKG).with_suffix("").parts))
        if mine is None:
            continue
        for line, module in imported(ast.parse(path.read_text())):
            theirs = floor_of(module)
            if theirs is None or theirs == mine:
                continue
            if FLOOR[theirs] > FLOOR[mine] or FLOOR[theirs] == FLOOR[mine]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {mine} imports {module}")
    return bad


def test_no_module_imports_a_higher_floor():
    assert violations() == []


def test_the_check_sees_function_level_and_string_imports(tmp_path):
    tree = ast.parse("def f():\n    from imprag_bench.tasks.corpora import load_corpus\n"
                     "def g():\n    importlib.import_module('imprag_bench.baselines.systems')\n")
    assert [m for _, m in imported(tree)] == ["imprag_bench.tasks.corpora", "imprag_bench.baselines.systems"]
