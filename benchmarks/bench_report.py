"""Size and load time of the HTML report: a synthetic big run (default 10 systems x 8 tasks x 300 examples,
k = 5) or an existing run folder, opened in headless Chromium.

    python benchmarks/bench_report.py                   # synthesise, write the report, measure
    python benchmarks/bench_report.py --run results/quick --json bench_report.json

Numbers printed (medians over --repeats):
  write_s      Python: read the run, load the corpus, render and write report.html
  size_mb      the file's size
  render_ms    in the page: performance.now() when the first render is done (navigation start -> HTML
               parsed, JSON parsed, leaderboard and the first 50 examples built), read from data-render-ms
  dump_s       wall time of `chromium --headless --dump-dom` on the page, and blank_s the same on an empty
               page (browser start-up); dump_s - blank_s is what the page itself costs
  shot_s       wall time of a 1280x2000 --screenshot (includes layout and paint), minus nothing

Synthetic passages are ~100 words (like the 100-word Wikipedia passages); each question has a pool of
--pool candidate passages that the systems draw their top-k from, so systems overlap the way retrievers do.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imprag_bench.harness import report  # noqa: E402
from imprag_bench.harness.report_html import write_report  # noqa: E402

GROUPS = {"nq": "seen", "hotpotqa": "seen", "simpleqa": "unseen-qa", "2wiki": "unseen-qa", "trex": "unseen-format",
          "zsre": "unseen-format", "fever": "unseen-format", "aida": "unseen-format"}


def synthesise(out: Path, n_sys: int, n_tasks: int, n_ex: int, k: int, pool: int, n_corpus: int, seed: int) -> None:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    corpus = out.parent / "corpus.jsonl"
    with open(corpus, "w") as f:
        for i in range(n_corpus):
            f.write(json.dumps({"id": f"wiki:{i}", "title": f"Title {i}",
                                "text": " ".join(rng.choices(words, k=100))}) + "\n")
    systems = ["imprag"] + [f"baseline-{i}" for i in range(1, n_sys)]
    tasks = list(GROUPS)[:n_tasks]
    recs = []
    for t in tasks:
        for e in range(n_ex):
            prompt = f"Q: {' '.join(rng.choices(words, k=12))}? A:"
            golds = [rng.choice(words), rng.choice(words)]
            cands = [f"wiki:{rng.randrange(n_corpus)}" for _ in range(pool)]
            for s in systems:
                em = float(rng.random() < 0.3)
                recs.append({"system": s, "task": t, "group": GROUPS[t], "id": f"{t}-{e}", "prompt": prompt,
                             "query": None if s == "imprag" else prompt, "retrieved": rng.sample(cands, k),
                             "prediction": rng.choice(golds) if em else rng.choice(words), "golds": golds,
                             "em": em, "f1": em, "recall": None if t == "fever" else float(rng.random() < 0.6)})
    for s in systems:
        (out / "preds" / s).mkdir(parents=True, exist_ok=True)
        for t in tasks:
            with open(out / "preds" / s / f"{t}.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in recs if r["system"] == s and r["task"] == t)
    cfg = {"corpus": str(corpus), "corpus_limit": None, "k": k, "n": n_ex, "seed": seed, "tasks": tasks,
           "systems": systems, "preset": "synthetic", "split": "test", "out": str(out)}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    report.write_csv(report.leaderboard(recs, n_boot=200), out / "leaderboard.csv")


def chromium(browser: str, profile: Path, url: str, screenshot: Path | None = None) -> tuple[float, str]:
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}", "--hide-scrollbars",
           "--window-size=1280,2000", *([f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]), url]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"chromium failed: {res.stderr[-1000:]}")
    return wall, res.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="measure this existing run folder instead of a synthetic one")
    ap.add_argument("--systems", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--pool", type=int, default=12, help="candidate passages per question")
    ap.add_argument("--corpus", type=int, default=50000, help="synthetic corpus size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fragment", default="filter=disagree", help="URL hash the page opens with")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise SystemExit("no chromium on PATH: run scripts/install-browser.sh")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.run:
            run, what = Path(args.run), f"run {args.run}"
        else:
            run = tmp / "run"
            run.mkdir()
            synthesise(run, args.systems, args.tasks, args.examples, args.k, args.pool, args.corpus, args.seed)
            what = f"synthetic {args.systems} systems x {args.tasks} tasks x {args.examples} examples, k={args.k}"
        page = tmp / "report.html"
        t0 = time.perf_counter()
        write_report(run, page)
        write_s = time.perf_counter() - t0
        data = re.search(r'id="report-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S).group(1)
        n_passages = len(json.loads(data)["passages"])
        blank = tmp / "blank.html"
        blank.write_text("<!DOCTYPE html><title>blank</title>")
        url = page.as_uri() + "#" + args.fragment
        blank_s, dump_s, render_ms, shot_s = [], [], [], []
        for i in range(args.repeats):
            blank_s.append(chromium(browser, tmp / "profile", blank.as_uri())[0])
            wall, dom = chromium(browser, tmp / "profile", url)
            m = re.search(r'data-render-ms="([0-9.]+)"', dom)
            if not m or 'data-ready="1"' not in dom:
                raise SystemExit("the page did not finish rendering")
            dump_s.append(wall)
            render_ms.append(float(m.group(1)))
            shot_s.append(chromium(browser, tmp / "profile", url, tmp / f"shot{i}.png")[0])
        res = {"what": what, "size_mb": round(page.stat().st_size / 1e6, 2), "passages": n_passages,
               "write_s": round(write_s, 2), "render_ms": round(statistics.median(render_ms), 1),
               "dump_s": round(statistics.median(dump_s), 2), "blank_s": round(statistics.median(blank_s), 2),
               "shot_s": round(statistics.median(shot_s), 2), "repeats": args.repeats}
    print(f"| {'what':<60} | size MB | passages | write s | render ms | dump s | blank s | screenshot s |")
    print(f"| {res['what']:<60} | {res['size_mb']:7} | {res['passages']:8} | {res['write_s']:7} | "
          f"{res['render_ms']:9} | {res['dump_s']:6} | {res['blank_s']:7} | {res['shot_s']:12} |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
