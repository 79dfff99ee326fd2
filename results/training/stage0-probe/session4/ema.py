"""One-off probe of session 4 (results in ../session4.csv). Stage 0 with an exponential moving average of the
projections' weights (evaluated instead of the last iterate) and/or an L2 pull towards the pretrained q/k
(L2-SP). Spec per run: ema_decay,l2sp_weight (0 = off).
Usage: python results/training/stage0-probe/session4/ema.py 0.99,0 0.998,0 0,1e-2
"""
import sys

import torch
from common import dev_recall, fit, nce, reset, setup

s = setup()
params = [*s.attn.q_proj.parameters(), *s.attn.k_proj.parameters()]
init = [p.detach().clone() for p in params]


def run(spec: str) -> None:
    decay, l2sp = (float(x) for x in spec.split(","))
    reset(s)
    ema = [p.detach().clone() for p in params]

    def loss_fn(idx, scores, params):
        loss = nce(s, idx, scores)
        return loss + l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, init)) if l2sp else loss

    @torch.no_grad()
    def average(params):
        for e, p in zip(ema, params):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)

    for step, loss in fit(s, loss_fn, [i for i, p in enumerate(s.P) if p], report=(1000, 1500, 2000, 3000),
                          on_step=average):
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, ema if decay else live):
                p.copy_(e)
        print(spec, step, loss, *dev_recall(s), flush=True)
        with torch.no_grad():
            for p, v in zip(params, live):
                p.copy_(v)


for spec in sys.argv[1:]:
    run(spec)
