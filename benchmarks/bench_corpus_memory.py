"""RAM per passage of the in-memory corpus every rank holds: the Corpus (Passage objects + id map) and the
`texts` list the index builders make from it. 100-word synthetic passages (DPR's psgs_w100 length).

    python benchmarks/bench_corpus_memory.py --passages 200000 [--json results/bench_corpus_memory.json]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_index_memory import rss_mb  # noqa: E402  (the same VmRSS reader)




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passages", type=int, default=200_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.records import Passage

    rng = random.Random(0)
    words = [f"w{rng.randrange(10**4)}" for _ in range(10_000)]  # 5 characters: English averages ~5 + a space
    base = rss_mb()
    corpus = Corpus("bench", [Passage(f"wiki-{i}", f"Title {i}", " ".join(rng.choices(words, k=100)))
                              for i in range(args.passages)])
    after_corpus = rss_mb()
    texts = corpus.texts
    after_texts = rss_mb()
    n = args.passages
    res = {"passages": n, "mean_text_chars": sum(len(p.text) for p in corpus.passages[:1000]) / 1000,
           "corpus_bytes_per_passage": (after_corpus - base) * 2**20 / n,
           "texts_bytes_per_passage": (after_texts - after_corpus) * 2**20 / n,
           "gb_for_21M": (after_texts - base) * 2**20 / n * 21_015_324 / 1e9}
    print(" | ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    del texts
    return 0


if __name__ == "__main__":
    sys.exit(main())
