"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with 13,552 synthetic retrieval queries
"Q: What is <title>? A:" (each passage its own positive, the seen tasks' 2-shot demonstrations in front, taking
turns) added to the 3,182 training questions; `base` fits the training questions alone.
Usage: python results/training/stage0-probe/session4/synth.py synth base
"""
import sys

import torch
from common import dev_recall, reset, setup

from imprag.projection_warmup import ProjectionWarmupConfig, fit_projections

s = setup()
prefix = [s.dev[t][0][0].rsplit("Q:", 1)[0] for t in ("nq", "hotpotqa")]  # the demonstrations of each task
queries = [f"{prefix[j % 2]}Q: What is {text.split(chr(10), 1)[0]}? A:" for j, text in enumerate(s.corpus.texts)]
xs = torch.from_numpy(s.model.embed_queries(queries, 32, k=3, bf16=True, features=True))
for mode in sys.argv[1:]:
    reset(s)
    x, pos = (torch.cat([s.xq, xs]), s.P + [[j] for j in range(len(queries))]) if mode == "synth" else (s.xq, s.P)
    done = 0
    for steps in [1500, 1500, 3000]:
        fit_projections(s.model, x, s.xp, pos, ProjectionWarmupConfig(steps, 3e-3, seed=done), s.scale)
        done += steps
        print(mode, done, *dev_recall(s), flush=True)
