"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with other passage keys: `suffix:<text>`
appends a suffix to every indexed passage (E_p is then the key of its last token), the text truncated to keep
64 tokens in all; `cut:<L>` cuts indexed passages to L tokens (the key nearer the title).
Usage: python results/training/stage0-probe/session4/passage_keys.py 'suffix:\\n\\n' 'suffix:\\nThis passage is about' cut:32 cut:16
"""
import sys

import torch
from common import dev_recall, reset, setup
from tqdm import tqdm

from imprag.model import pad
from imprag.projection_warmup import ProjectionWarmupConfig, fit_projections

s = setup()
toks = s.model.token_ids(s.corpus.texts)
for spec in sys.argv[1:]:
    kind, arg = spec.split(":", 1)
    if kind == "suffix":
        suf = s.model.token_ids([arg.encode().decode("unicode_escape")])[0]
        seqs = [t[:64 - len(suf)] + suf for t in toks]
    else:
        seqs = [t[:int(arg)] or [s.model.pad_id] for t in toks]
    order, xp = sorted(range(len(seqs)), key=lambda i: len(seqs[i])), torch.zeros(len(seqs), s.xp.shape[1])
    with torch.no_grad():
        for b in tqdm(range(0, len(order), 64), mininterval=60):
            idx = order[b:b + 64]
            ids, mask = pad([seqs[i] for i in idx], s.model.pad_id, "right")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                xp[idx] = s.model.passage_features(ids, mask).float()
    reset(s)
    print(spec, 0, *dev_recall(s, xp), flush=True)
    done = 0
    for steps in [1500, 1500]:
        fit_projections(s.model, s.xq, xp, s.P, ProjectionWarmupConfig(steps, 3e-3, seed=done), s.scale)
        done += steps
        print(spec, done, *dev_recall(s, xp), flush=True)
