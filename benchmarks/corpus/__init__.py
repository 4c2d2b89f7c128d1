"""A broad, labeled detection corpus made by really training small models on CPU with torch.

    python -m benchmarks.corpus build [OUT] [--families a,b] [--jobs 2] [--retrain]
    python -m benchmarks.corpus eval  [OUT] [--split tune|heldout|all] [--json report.json]

OUT defaults to benchmarks/data/corpus (git-ignored). It replaces the old narrow corpus script (removed).

Every run trains a tiny model (Transformer LMs Pre-/Post-LN, a char LSTM, ReLU/residual MLPs, a
WideResNet-like conv net) with its own LR schedule, bumps, resumes, fp16 loss scaling and data
quirks (tasks.py, train.py), is logged the way a real tool would (writers.py: TensorBoard, Lightning
CSV, HF trainer_state.json, JSONL; every step or sparse, HF means, 4-decimal rounding, restarts) and
is labeled from its configuration: the regime it was designed to cause. The label is then VERIFIED
against the recorded curve, mostly by comparing with a paired control run (same seed, the cause
removed) with rules written independently of the analyzer (verify.py). Runs whose curve does not
show the intended shape are dropped with the reason (sweep trials: kept, marked ambiguous, not
scored); nothing is relabeled to fit. LR-sweep ground truth (lr*, edge of instability) comes from
the trials' eval losses (build.py).

Families (families/<name>.py, one module each; docstrings hold the measured behaviour) are split
by whole family into tune and held-out (families.SPLIT). Output: OUT/runs/<family>/..., the
labels in OUT/labels.json (the structure /work/shared/eval/score.py reads), OUT/SUMMARY.md with the
family table, and per-family state in OUT/families/ (incremental rebuilds).
"""
