"""The training layer every trainable system stands on, ImpRAG and the explicit-query baselines alike.

- `loop`: the seeded, resumable training loop (checkpoints, torchrun data parallelism, cross-rank gathers);
- `losses`: multi-label NCE (paper Eq. 3), the self-distillation KL (Eqs. 4-6), the generation loss;
- `candidates`: pseudo-labels (positives, hard negatives) from an off-the-shelf dense retriever;
- `mix`: the training mix (retrieval items, instruction items, plain text);
- `data`: the seen tasks' examples, cached pseudo-labels and demonstrations: one builder for every system;
- `negatives`: random corpus negatives (a CPU-budget option);
- `projection_fit`: fitting an LM-layer retriever's q/k projections against the whole corpus (stage 0, refit);
- `projection_fit`: stage 0 / refit (a CPU-budget option): a retriever's layer-b q/k fitted against the whole
  corpus on frozen features (ImpRAG and RA-DIT-Llama bring their own features);
- `config`: training presets as data (presets/train/*.yaml) loaded into typed configs;
- `trainer`: how a system registers its `imprag-bench train` entry point.
A method's own objective (what its losses are computed on) lives with the method.
"""
