"""What options each system accepts, and their validation before a run writes anything.

A system factory declares its options with the `declare` decorator (or by setting `factory.options`):
a map name -> `Option` (type, choices, default, one-line help). `validate(system, options)` then checks a
spec's options against them: an unknown key or a bad value is a UserError naming the system, the key and
value, and the accepted keys, with the nearest accepted name ("did you mean 'query'?"). Values are
converted to the declared type (`k="10"` -> 10), so a quoted value and a bare one mean the same.

The run-wide settings the runner hands every system (`RUN_OPTIONS`: model, k, batch_size, max_new_tokens,
seed, device, dtype, label) are accepted by every system and checked the same way. A factory that declares
nothing (a test double, a plug-in) accepts any key; the run-wide settings are still checked.

The declared `default` is documentation (shown by `imprag-bench systems -v`); the system's own code keeps
applying its defaults, so validation never changes what an omitted option means.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any, Callable

from imprag_bench.harness.errors import UserError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _to_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise ValueError("must be true or false")
    return text in _TRUE


def _to_int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be an integer")
    try:
        return int(value) if isinstance(value, (int, float)) else int(str(value).strip())
    except ValueError:
        raise ValueError("must be an integer") from None


def _to_str(value) -> str:
    if isinstance(value, (bool, list, dict)):
        raise ValueError("must be a string")
    if not str(value).strip():
        raise ValueError("needs a value")
    return str(value)


class Bf16:
    """Option type of a bf16 switch: true, false or "auto" (bf16 where the device computes it natively,
    harness.hardware.use_bf16)."""


def _to_bf16(value) -> bool | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _to_bool(value)
    except ValueError:
        raise ValueError("must be true, false or auto") from None


_CONVERT = {str: _to_str, int: _to_int, bool: _to_bool, Bf16: _to_bf16}


@dataclass(frozen=True)
class Option:
    """One accepted option: its type (str, int or bool), allowed values, and help."""

    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    min: int | None = None  # smallest allowed value of an int
    folder: bool = False  # the value must be an existing folder (checkpoints)
    required: bool = False
    check: Callable[[Any], str | None] | None = None  # extra check: returns what is wrong, or None

    def __post_init__(self):
        if self.type not in _CONVERT:
            raise TypeError(f"Option type must be one of {', '.join(t.__name__ for t in _CONVERT)}")

    def convert(self, value):
        """The value in the declared type; ValueError saying what is expected otherwise."""
        if value is None:
            raise ValueError("needs a value")
        out = _CONVERT[self.type](value)
        if self.min is not None and out < self.min:
            raise ValueError(f"must be at least {self.min}")
        if self.choices and out not in self.choices:
            close = difflib.get_close_matches(str(out), [str(c) for c in self.choices], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}{hint}")
        if self.folder and not os.path.isdir(out):
            raise ValueError("is not a folder")
        if self.check is not None:
            problem = self.check(out)
            if problem:
                raise ValueError(problem)
        return out

    def describe(self) -> str:
        """One line for `imprag-bench systems -v`: type, choices, default and help."""
        kind = "|".join(map(str, self.choices)) if self.choices else ("folder" if self.folder else
                                                                        "true|false|auto" if self.type is Bf16
                                                                        else self.type.__name__)
        default = " (required)" if self.required else (f" (default {self.default})" if self.default is not None else "")
        return f"{kind}{default}: {self.help}"


BF16 = Option(Bf16, "auto", "bf16 autocast for building and querying the index: true, false or auto (where the "
              "device computes bf16 natively)")


def _device(value: str) -> str | None:
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        return "is not a torch device (cpu, cuda, cuda:1, mps)"
    return None


def _model(value: str) -> str | None:
    from imprag_bench.harness.lm import OFFLINE_MODELS

    if value in OFFLINE_MODELS or os.path.isdir(value) or "/" in value:
        return None
    return (f"is neither an offline alias ({', '.join(OFFLINE_MODELS)}), a local folder nor a hub id such as "
            "meta-llama/Llama-3.2-3B")


# The settings the runner passes to every system (imprag_bench.harness.runner.run); always accepted.
RUN_OPTIONS: dict[str, Option] = {
    "model": Option(str, "smollm2-135m", "the LM: an offline alias, a local folder or a hub id", check=_model),
    "k": Option(int, 5, "passages retrieved and read", min=1),
    "batch_size": Option(int, 8, "examples per LM batch", min=1),
    "max_new_tokens": Option(int, 16, "answer length limit in tokens", min=1),
    "seed": Option(int, 0, "random seed"),
    "device": Option(str, "cpu", "torch device", check=_device),
    "dtype": Option(str, "auto", "LM weight dtype of readers and ImpRAG: auto (bfloat16 where the device computes "
                    "it natively, else float32)", choices=("auto", "float32", "bfloat16", "float16")),
    "label": Option(str, None, "the leaderboard's system column (default: the spec text)"),
}

# Run-level settings that are not system options, checked by `validate_run` (a preset can set them too).
RUN_SETTINGS: dict[str, Option] = {
    "n": Option(int, None, "examples per task (null: all)", min=1),
    "fewshot": Option(int, 0, "demonstrations per prompt", min=0),
    "corpus_limit": Option(int, None, "use only the first N passages (null: all)", min=1),
}


def declare(**options: Option) -> Callable:
    """Decorator for a system factory: the options it accepts beyond RUN_OPTIONS."""
    def deco(factory):
        factory.options = options
        return factory
    return deco


def accepted(factory) -> dict[str, Option] | None:
    """Every option the factory accepts (its own over RUN_OPTIONS), or None when it declares nothing."""
    own = getattr(factory, "options", None)
    return None if own is None else {**RUN_OPTIONS, **own}


def validate(system: str, options: dict, where: str | None = None) -> dict:
    """Check a system's options (run-wide and its own); returns them converted to the declared types.

    `system` must be a registered name; `where` (the spec text) is named in messages when given."""
    from imprag_bench.harness.registry import SYSTEMS

    factory = SYSTEMS.get(system)
    spec = accepted(factory)
    known = spec if spec is not None else RUN_OPTIONS
    at = f"system {system!r}" + (f" (in {where!r})" if where and where != system else "")
    out = {}
    for key, value in options.items():
        if key not in known:
            if spec is None:  # undeclared factory: anything goes
                out[key] = value
                continue
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"{at}: unknown option {key!r}{hint} (accepted: {', '.join(sorted(known))})")
        try:
            out[key] = known[key].convert(value)
        except ValueError as e:
            raise UserError(f"{at}: option {key}={value!r} {e}") from None
    for key, opt in known.items():
        if opt.required and key not in out:
            raise UserError(f"{at}: needs {key}=<{'folder' if opt.folder else opt.type.__name__}> ({opt.help})")
    return out


def validate_run(cfg: dict) -> None:
    """Check the run-level settings of a resolved config (n, fewshot, corpus_limit)."""
    for key, opt in RUN_SETTINGS.items():
        value = cfg.get(key)
        if value is None:
            continue
        try:
            opt.convert(value)
        except ValueError as e:
            raise UserError(f"setting {key}={value!r} {e}") from None
