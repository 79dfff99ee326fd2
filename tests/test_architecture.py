"""The import rules of the architecture (docs/architecture.md), checked on every import statement of the
package, imports inside functions and importlib calls with a literal name included:
- tasks never import a system (imprag, baselines);
- the shared harness never imports a method (imprag, baselines);
- imprag and baselines never import each other (they stand side by side on the harness).
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "imprag_bench"
FORBIDDEN = {
    "harness": ("imprag_bench.imprag", "imprag_bench.baselines"),
    "tasks": ("imprag_bench.imprag", "imprag_bench.baselines"),
    "imprag": ("imprag_bench.baselines",),
    "baselines": ("imprag_bench.imprag",),
}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`: statements at any depth and importlib.import_module("...")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def violations(root: Path = PKG) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        part = path.relative_to(root).parts[0]
        lines = {}
        for line, mod in imported_modules(path.read_text()):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN.get(part, ())):
                lines.setdefault(line, mod)
        out += [f"{path.relative_to(root.parent)}:{line} imports {mod}" for line, mod in sorted(lines.items())]
    return out


def test_the_package_keeps_the_import_rules():
    assert violations() == []


@pytest.mark.parametrize("where,code", [
    ("harness/x.py", "def f():\n    from imprag_bench.imprag.model import pad\n"),
    ("tasks/x.py", "import imprag_bench.baselines.systems\n"),
    ("imprag/x.py", "import importlib\nm = importlib.import_module('imprag_bench.baselines.reader')\n"),
    ("baselines/x.py", "from imprag_bench.imprag import model\n"),
])
def test_the_checker_catches_each_kind_of_violation(tmp_path, where, code):
    root = tmp_path / "imprag_bench"
    (root / where).parent.mkdir(parents=True)
    (root / where).write_text(code)
    (root / "harness").mkdir(exist_ok=True)
    (root / "harness" / "ok.py").write_text("from imprag_bench.harness import lm\n")
    assert len(violations(root)) == 1 and where in violations(root)[0]


def test_builtins_are_plugins_not_harness_imports():
    """The harness finds the built-in systems through the package's entry points."""
    from importlib.metadata import entry_points
    names = {ep.value for ep in entry_points(group="imprag_bench.plugins")}
    assert {"imprag_bench.imprag.system", "imprag_bench.baselines.systems", "imprag_bench.tasks.paper_tasks"} <= names
