"""The command line under torchrun: torchrun's own parser reads any option of ours that abbreviates one of its
own (`--n` for `--nnodes`...) and stops; every command's options must pass through it untouched, and ours
accept no abbreviations either."""
from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from imprag_bench.harness.cli import build_parser
from imprag_bench.harness.errors import UserError

TORCHRUN_ONLY = {"--n"}  # kept for one-process use; under torchrun the same option is --examples / -n


def actions(parser: argparse.ArgumentParser, command: str = "") -> list[tuple[str, argparse.Action]]:
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += actions(sub, name)
        elif a.option_strings:
            out.append((command, a))
    return out


def torchrun_passes(command: str, option: str) -> bool:
    from torch.distributed.run import get_args_parser

    argv = ["--standalone", "--nproc_per_node", "2", "-m", "imprag_bench.harness.cli", command, option, "1"]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns = get_args_parser().parse_args(argv)
    except SystemExit:
        return False
    return ns.training_script_args == [command, option, "1"]


def test_every_option_of_every_command_passes_through_torchrun():
    found = actions(build_parser())
    assert len(found) > 20
    for command, action in found:
        spellings = [o for o in action.option_strings if o not in TORCHRUN_ONLY]
        assert spellings, (command, action.option_strings)
        for option in spellings:
            assert torchrun_passes(command, option), (command, option)
    assert not torchrun_passes("run", "--n")  # why --examples exists


def test_examples_is_n_and_abbreviations_are_refused():
    p = build_parser()
    assert p.parse_args(["run", "--examples", "7"]).n == p.parse_args(["run", "--n", "7"]).n == \
        p.parse_args(["run", "-n", "7"]).n == 7
    with pytest.raises(UserError):
        with contextlib.redirect_stderr(io.StringIO()):
            p.parse_args(["run", "--exam", "7"])
    with pytest.raises(UserError):
        with contextlib.redirect_stderr(io.StringIO()):
            p.parse_args(["run", "--max-new", "7"])
