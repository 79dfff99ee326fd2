"""One registry type for everything that is looked up by name: tasks, corpora and systems.

Entries register with a decorator (or `add`) at import time; unknown names raise a UserError with the
closest registered names, so a typo on the command line gets a useful answer.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

from imprag_bench.harness.errors import UserError

T = TypeVar("T")

# Modules whose import registers the built-in entries. Loaded lazily so `import imprag_bench.harness` stays light.
_BUILTIN_MODULES = (
    "imprag_bench.tasks.paper_tasks",
    "imprag_bench.tasks.local",
    "imprag_bench.tasks.corpora",
    "imprag_bench.baselines.systems",
    "imprag_bench.imprag.system",
    "imprag_bench.imprag.train",
    "imprag_bench.baselines.ra_dit",
)
_loaded = False


def load_builtins() -> None:
    """Import the modules that register the built-in tasks, corpora and systems (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a part of the project not written yet must not break the rest
            if e.name != mod:
                raise


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
TRAINERS: Registry = Registry("trainer")  # system name -> imprag_bench.harness.training.Trainer
