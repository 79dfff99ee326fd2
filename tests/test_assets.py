"""The asset layer: fetch once, verify, detect corruption and refetch, never touch the network when warm."""
import subprocess

import pytest

from imprag_bench.harness import assets
from imprag_bench.harness.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(tmp_path))
    return tmp_path


def test_fetch_verify_corrupt_refetch_and_offline_when_warm(cache, monkeypatch):
    a = assets.COUNTRYINFO  # the smallest declared asset (380 KB)
    d = assets.ensure(a)
    assert d == cache / "assets" / "countryinfo-1.0.1"
    france = d / "countryinfo/data/france.json"
    assert france.is_file()

    # Warm cache: no subprocess (pip) may run.
    def no_network(*args, **kwargs):
        raise AssertionError("network touched with a warm cache")
    monkeypatch.setattr(subprocess, "run", no_network)
    assert assets.ensure(a) == d
    monkeypatch.undo()
    monkeypatch.setenv("IMPRAG_BENCH_CACHE", str(cache))

    france.write_text("{}")  # corrupt one file
    assert not assets._verified(d, a.files)
    assets.ensure(a)
    assert assets._verified(d, a.files)
    france.unlink()  # missing file
    assets.ensure(a)
    assert france.is_file()


def test_wrong_pin_is_refused_and_leaves_no_cache(cache):
    bad = assets.Asset(name="bad", package="countryinfo", version="1.0.1", wheel_sha256="0" * 64,
                       files={"countryinfo/data/": "0" * 64}, approx_mb=1, license="MIT")
    with pytest.raises(UserError, match="has sha256"):
        assets.ensure(bad)
    assert not bad.dir.exists()


def test_derived_cache_rebuilds_when_corrupt(cache):
    builds = []

    def build(out):
        builds.append(1)
        (out / "w.bin").write_bytes(b"weights")
    p = assets.derived("x/y", build)
    assert (p / "w.bin").read_bytes() == b"weights" and len(builds) == 1
    assets.derived("x/y", build)
    assert len(builds) == 1
    (p / "w.bin").write_bytes(b"corrupt")
    assets.derived("x/y", build)
    assert len(builds) == 2 and (p / "w.bin").read_bytes() == b"weights"
