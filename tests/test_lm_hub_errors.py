"""Weights that cannot be fetched from the hub give one clean UserError saying how to provide them, fast
(one access check instead of transformers' minutes of retries). All offline."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imprag_bench.harness import lm
from imprag_bench.harness.errors import UserError

ROOT = Path(__file__).parent.parent
HOWTO = ("hf auth login", "https://huggingface.co/meta-llama/Llama-3.2-3B", "--model PATH")


def _load_in_subprocess(tmp_path, **env_extra) -> tuple[str, float]:
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT), **env_extra)
    code = ("from imprag_bench.harness.errors import UserError\nfrom imprag_bench.harness.lm import load_lm\n"
            "try:\n    load_lm('meta-llama/Llama-3.2-3B')\nexcept UserError as e:\n    print('USERERROR', e)\n")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    return out.stdout + out.stderr, time.monotonic() - t0


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"},
                                 {"HF_ENDPOINT": "http://127.0.0.1:9"}])  # offline mode / nothing listening
def test_unreachable_hub_gives_one_clean_message_quickly(tmp_path, env):
    out, seconds = _load_in_subprocess(tmp_path, **env)
    assert out.startswith("USERERROR cannot get the weights of meta-llama/Llama-3.2-3B"), out
    assert all(h in out for h in HOWTO), out
    assert "Traceback" not in out and "Retrying" not in out, out
    assert seconds < 60, seconds  # transformers alone retries for ~50 s before giving up


def _http_error(cls, status: int):
    import httpx2
    req = httpx2.Request("GET", "https://huggingface.co/api/models/meta-llama/Llama-3.2-3B/auth-check")
    return cls("denied", response=httpx2.Response(status, request=req))


def gated_hub(monkeypatch) -> None:
    """The hub online, every repository gated without access (auth_check answers 403)."""
    from huggingface_hub import HfApi, errors

    def gated(self, repo):
        raise _http_error(errors.GatedRepoError, 403)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "auth_check", gated)


def test_gated_repo_without_access(monkeypatch):
    gated_hub(monkeypatch)
    with pytest.raises(UserError, match="gated and this account has no access") as e:
        lm.load_lm("meta-llama/Llama-3.2-3B")
    assert all(h in str(e.value) for h in HOWTO)


def test_unknown_repo(monkeypatch):
    from huggingface_hub import HfApi, errors

    def missing(self, repo):
        raise _http_error(errors.RepositoryNotFoundError, 404)

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "auth_check", missing)
    with pytest.raises(UserError, match="no such model repository"):
        lm.load_lm("meta-llama/No-Such-Model")


def test_missing_local_folder_is_not_treated_as_a_hub_id(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        lm.load_lm(str(tmp_path / "no" / "such" / "model"))


def test_cached_model_loads_from_the_cache_when_the_hub_is_unreachable(monkeypatch):
    import huggingface_hub
    import httpx2
    from huggingface_hub import HfApi

    def down(self, repo):
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "auth_check", down)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: "/cache/config.json")
    assert lm.hub_weights_reachable("meta-llama/Llama-3.2-3B") is False  # -> local_files_only=True
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    with pytest.raises(UserError, match="the hub cannot be reached"):
        lm.hub_weights_reachable("meta-llama/Llama-3.2-3B")
