"""Peak RSS per rank of the memory-mapped corpus store (imprag_bench/harness/corpus_store.py) as the corpus grows,
against the in-memory list Corpus every rank used to hold.

For each size a synthetic corpus in the hub schema (id "1".."N", title, 100-word text: DPR's psgs_w100 shape) is
written into a store in a temporary folder (in a fresh process: the writer's own peak is reported too), then a
FRESH process per size does what a rank does: open the store, len, read texts in slices of 64 over the first and
over a random window of --read-rows rows (the index builders' `texts[s:e]`), get_many on --lookups random ids.
It reports VmHWM (peak RSS) and VmRSS/RssAnon/RssFile after open, after reading and at the end from
/proc/self/status. RSS counts the file-backed pages of the memory-mapped store a process has touched: those are
the OS page cache, one copy shared by all ranks on a machine and reclaimable; on kernels that cache files in
large folios (ext4 on 6.16+) one random lookup maps up to a whole folio, so VmHWM grows with the pages random
lookups reach, while the private (anon) memory is what each rank pays alone. The list
Corpus is measured the same way (its `texts` list built as the index builders do) at the smallest size.

    python benchmarks/bench_corpus_store.py --sizes 200000 1000000 --json results/bench_corpus_store.json
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SLICE = 64


def status_mb() -> dict:
    """VmHWM, VmRSS, RssAnon, RssFile of this process in MiB (/proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def synthetic(n: int, seed: int = 0):
    """n passages in the hub schema, generated one at a time (the same words as bench_corpus_memory.py)."""
    from imprag_bench.harness.records import Passage
    rng = random.Random(seed)
    words = [f"w{rng.randrange(10**4)}" for _ in range(10_000)]
    for i in range(n):
        yield Passage(str(i + 1), f"Title {i}", " ".join(rng.choices(words, k=100)))


def child_write(folder: Path, n: int) -> dict:
    from imprag_bench.harness.corpus_store import write_store
    t = time.time()
    meta = write_store(folder, synthetic(n), "bench", {"synthetic": n})
    return {"write_s": time.time() - t, "writer": status_mb(), "id_map": meta["id_map"]["kind"],
            "disk_bytes": sum(f.stat().st_size for f in folder.iterdir())}


def rank_work(corpus, read_rows: int, lookups: int, seed: int = 1) -> dict:
    """What a rank does with the corpus; seconds per step."""
    rng = random.Random(seed)
    n = len(corpus)
    texts = corpus.texts
    t = time.time()
    chars = 0
    r = min(read_rows, n)
    for start in (0, rng.randrange(0, n - r + 1)):
        for s in range(start, start + r, SLICE):
            chars += sum(map(len, texts[s:min(s + SLICE, start + r)]))
    read_s = time.time() - t
    after_read = status_mb()
    want = [str(rng.randrange(n) + 1) for _ in range(lookups)]  # ids as retrieval returns them ("1".."N")
    t = time.time()
    got = corpus.get_many(want)
    assert [p.id for p in got] == want
    return {"read_s": read_s, "rows_read": 2 * r, "chars_read": chars, "get_many_s": time.time() - t,
            "after_read": after_read}


def child_read(folder: Path, read_rows: int, lookups: int) -> dict:
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.corpus_store import StoredPassages
    base = status_mb()
    t = time.time()
    corpus = Corpus("bench", StoredPassages(folder))
    out = {"open_s": time.time() - t, "base": base, "after_open": status_mb(), "rows": len(corpus)}
    out.update(rank_work(corpus, read_rows, lookups))
    out["end"] = status_mb()
    out["anon_max"] = max(s["RssAnon"] for s in (out["after_open"], out["after_read"], out["end"]))
    return out


def child_list(n: int, read_rows: int, lookups: int) -> dict:
    from imprag_bench.harness.corpus import Corpus
    base = status_mb()
    t = time.time()
    corpus = Corpus("bench", list(synthetic(n)))
    texts = corpus.texts  # what the index builders made from it: the whole list
    out = {"open_s": time.time() - t, "base": base, "after_open": status_mb(), "rows": len(corpus)}
    out.update(rank_work(corpus, read_rows, lookups))
    out["end"] = status_mb()
    out["anon_max"] = max(s["RssAnon"] for s in (out["after_open"], out["after_read"], out["end"]))
    del texts
    return out


def run_child(*args: str) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise SystemExit(f"child {args} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def table(res: dict) -> str:
    head = ("| corpus | rows | disk MB | write s (writer peak MB) | open s | RSS after open MB (anon) | "
            "peak RSS MB (VmHWM) | anon RSS max MB | file-backed RSS at end MB | read 2 x {r} texts s | "
            "get_many {k} s |")
    lines = [head.format(r=f"{res['read_rows']:,}", k=f"{res['lookups']:,}"), "|" + "---|" * 11]
    for row in res["store"] + ([res["list"]] if res.get("list") else []):
        rd = row["read"]
        write = f"{row['write_s']:.1f} ({row['writer']['VmHWM']:.0f})" if "write_s" in row else "-"
        disk = f"{row['disk_bytes'] / 2**20:.0f}" if "disk_bytes" in row else "-"
        lines.append(f"| {row['kind']} | {rd['rows']:,} | {disk} | {write} | {rd['open_s']:.2f} | "
                     f"{rd['after_open']['VmRSS']:.0f} ({rd['after_open']['RssAnon']:.0f}) | "
                     f"{rd['end']['VmHWM']:.0f} | {rd['anon_max']:.0f} | {rd['end']['RssFile']:.0f} | "
                     f"{rd['read_s']:.2f} | {rd['get_many_s']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--read-rows", type=int, default=100_000, help="rows read from the start and from a random window")
    ap.add_argument("--lookups", type=int, default=1000, help="random ids looked up with get_many")
    ap.add_argument("--no-list", action="store_true", help="skip the in-memory list Corpus at the smallest size")
    ap.add_argument("--workdir", type=Path, help="where the stores go (default: a temporary folder, removed)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, *rest = args.child
        res = {"write": lambda: child_write(Path(rest[0]), int(rest[1])),
               "read": lambda: child_read(Path(rest[0]), int(rest[1]), int(rest[2])),
               "list": lambda: child_list(int(rest[0]), int(rest[1]), int(rest[2]))}[mode]()
        print(json.dumps(res))
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        res = {"cpu": cpu_model(), "command": "python benchmarks/bench_corpus_store.py " + " ".join(argv or sys.argv[1:]),
               "read_rows": args.read_rows, "lookups": args.lookups, "slice": SLICE, "store": []}
        for n in args.sizes:
            folder = Path(work) / f"store-{n}"
            print(f"writing {n:,} passages ...", file=sys.stderr, flush=True)
            row = {"kind": "store", **run_child("write", str(folder), str(n))}
            row["read"] = run_child("read", str(folder), str(args.read_rows), str(args.lookups))
            res["store"].append(row)
        if not args.no_list:
            n = min(args.sizes)
            print(f"list Corpus of {n:,} passages ...", file=sys.stderr, flush=True)
            res["list"] = {"kind": "list Corpus (before)", "read": run_child("list", str(n), str(args.read_rows),
                                                                            str(args.lookups))}
    md = table(res)
    print(f"CPU: {res['cpu']}\n\n{md}")
    if args.json:
        res["table"] = md
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
