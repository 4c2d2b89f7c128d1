"""python -m benchmarks.corpus build [OUT] [--families a,b] [--jobs 2] [--retrain]
python -m benchmarks.corpus eval  [OUT] [--split tune|heldout|all] [--json report.json]
python -m benchmarks.corpus eval-printed [OUT] [--keep DIR] [--json report.json]"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "corpus"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="train, verify and write the corpus (incremental per family)")
    b.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    b.add_argument("--families", help="comma-separated families to rebuild (default: the changed or missing ones)")
    b.add_argument("--jobs", type=int, default=2, help="training worker processes (one torch thread each)")
    b.add_argument("--retrain", action="store_true", help="ignore cached training records")
    e = sub.add_parser("eval", help="run the analyzer on OUT/runs and score it against OUT/labels.json")
    e.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    e.add_argument("--split", choices=("tune", "heldout", "all"), default=None,
                   help="print only this split (default: tune, heldout and all)")
    e.add_argument("--json", type=Path, help="also write the scores as JSON here")
    p = sub.add_parser("eval-printed", help="re-print every run as a script's stdout, then score it as eval does")
    p.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT)
    p.add_argument("--keep", type=Path, help="write the printed runs here (default: a temporary directory)")
    p.add_argument("--json", type=Path, help="also write the scores as JSON here")
    args = ap.parse_args()
    if args.action == "build":
        from benchmarks.corpus.build import build
        fams = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
        build(args.out, families=fams, jobs=args.jobs, retrain=args.retrain)
    elif args.action == "eval-printed":
        from benchmarks.corpus.printed import evaluate_printed
        print(evaluate_printed(args.out, keep=args.keep, json_path=args.json))
    else:
        from benchmarks.corpus.evaluate import evaluate
        print(evaluate(args.out, split=args.split, json_path=args.json))


if __name__ == "__main__":
    main()
