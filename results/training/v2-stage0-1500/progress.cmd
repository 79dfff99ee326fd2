.venv/bin/python results/training/progress.py --out results/training/v2-stage0-1500/progress \
  --point "untrained" 0 results/training/v2-stage0-1500/leaderboard.csv imprag-untrained \
  --point "quick" 7.2 results/training/v2-stage0-1500/leaderboard.csv imprag-quick \
  --point "full: stage 0" 14.3 results/training/v2-stage0-1500/leaderboard.csv imprag-full-stage0 \
  --point "full: + NCE warmup" 33.5 results/training/v2-stage0-1500/leaderboard.csv imprag-full-warmup \
  --point "full: + self-distillation" 48.6 results/training/v2-stage0-1500/leaderboard.csv imprag-full \
  --point "stage 0 + self-distillation" 23.8 results/training/v2-stage0-1500/leaderboard.csv imprag-s0distill \
  --ref "dense (MiniLM)" results/training/v2-stage0-1500/leaderboard.csv dense \
  --ref "closed-book" results/training/v2-stage0-1500/leaderboard.csv closed-book
