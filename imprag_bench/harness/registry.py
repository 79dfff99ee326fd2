"""One registry type for everything that is looked up by name: tasks, corpora, systems and trainers.

Entries register with a decorator (or `add`) when their module is imported; unknown names raise a UserError
with the closest registered names, so a typo on the command line gets a useful answer.

Which modules register entries is data, not code here: every module named in the `imprag_bench.plugins`
entry-point group is imported on first use. The built-in tasks, corpora and systems are declared there by
this package's pyproject.toml; another installed package adds its own the same way; and a module or .py
file given with `--include` (`include`) is imported before the command runs. So the shared harness never
imports a method, and a user plugs in a task or system without editing it.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from imprag_bench.harness.errors import UserError

T = TypeVar("T")

PLUGIN_GROUP = "imprag_bench.plugins"
_loaded = False


def load_builtins() -> None:
    """Import every module of the `imprag_bench.plugins` entry-point group (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    plugins = entry_points(group=PLUGIN_GROUP)
    if not any(ep.value.startswith("imprag_bench.") for ep in plugins):
        raise UserError("imprag-bench's built-in tasks and systems are not registered: install the package "
                        "(bash scripts/setup.sh, or pip install -e .) so that its entry points exist")
    for ep in sorted(plugins, key=lambda e: (not e.value.startswith("imprag_bench."), e.name)):
        importlib.import_module(ep.value)


def include(spec: str) -> None:
    """Import a user module that registers tasks or systems: a .py file path or an importable module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise UserError(f"--include {spec}: no such file")
        name = f"imprag_bench_include_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:
            return
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        load_builtins()  # the user's module may extend built-ins (e.g. reuse a task's loaders)
        try:
            mod_spec.loader.exec_module(module)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001  a user's module failing to import: one clear message
            del sys.modules[name]
            raise UserError(f"--include {spec}: importing it failed: {type(e).__name__}: {e}") from e
        return
    load_builtins()
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as e:
        raise UserError(f"--include {spec}: no such file or importable module ({e})") from e


class Registry(Generic[T]):
    """A name -> entry map with near-miss suggestions for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        def deco(item: T) -> T:
            return self.add(name, item)
        return deco

    def get(self, name: str) -> T:
        load_builtins()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UserError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self._items)})")
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names in registration order (the paper's task order for tasks)."""
        load_builtins()
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


TASKS: Registry = Registry("task")
CORPORA: Registry = Registry("corpus")
SYSTEMS: Registry = Registry("system")
TRAINERS: Registry = Registry("trainer")  # system name -> harness.training.trainer.Trainer
ANALYSES: Registry = Registry("analysis")  # name -> fn(out, rows): an analysis beside the paper (harness.analyses)
# What the harness reads through the tasks floor without importing it (registered by imprag_bench.tasks):
# "corpus-file" (path, limit) -> Corpus; "task-file" (path) -> TaskSpec of a local file; "instruct-set"
# (name, limit, seed) -> instruction records
LOADERS: Registry = Registry("loader")
