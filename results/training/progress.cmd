.venv/bin/python results/training/progress.py --out results/training/progress \
  --point "untrained" 0 results/training/leaderboard.csv imprag-untrained \
  --point "quick" 3.9 results/training/leaderboard.csv imprag-quick \
  --point "full: stage 0" 3.8 results/training/leaderboard.csv imprag-full-stage0 \
  --point "+ NCE warmup" 25.8 results/training/leaderboard.csv imprag-full-warmup \
  --point "+ self-distill." 39.6 results/training/leaderboard.csv imprag-full \
  --point "+ refit = full" 46.6 results/training/leaderboard.csv imprag-full-refit \
  --ref "dense (MiniLM)" results/training/leaderboard.csv dense \
  --ref "closed-book" results/training/leaderboard.csv closed-book
