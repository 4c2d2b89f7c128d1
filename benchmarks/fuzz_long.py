"""The long fuzz run: >= 100,000 corrupted-file cases through the whole pipeline (tests/test_fuzz.py).

    python benchmarks/fuzz_long.py [--examples 8000] [--jobs 2]

Runs tests/test_fuzz.py under the hypothesis profile "long" (random, not the test suite's fixed
examples; a failure is shrunk and printed with its @reproduce_failure blob), each parametrised
test with --examples cases, the tests spread over --jobs processes. Prints the cases run per
test (counted by the tests themselves), the total, the wall time and any failure, and exits
non-zero when a test failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ids() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/test_fuzz.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("tests/test_fuzz.py::test_")
            and "[" in line]  # the parametrised fuzz tests (not the oracle's own check)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=8000, help="cases per parametrised test")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    ids = test_ids()
    groups = [ids[i::args.jobs] for i in range(args.jobs)]
    stats = [Path(tempfile.mkstemp(prefix="fuzz-stats-")[1]) for _ in groups]
    t0 = time.perf_counter()
    procs = []
    for group, stat in zip(groups, stats):
        env = dict(os.environ, STEADYTRAIN_FUZZ_EXAMPLES=str(args.examples), STEADYTRAIN_FUZZ_STATS=str(stat),
                   PYTHONWARNINGS="ignore")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=long", *group]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - t0
    counts: collections.Counter[str] = collections.Counter()
    for stat in stats:
        counts.update(line.strip() for line in stat.read_text().splitlines() if line.strip())
        stat.unlink()
    failed = [p.returncode for p in procs if p.returncode != 0]
    for out in outputs:
        tail = [ln for ln in out.splitlines() if "passed" in ln or "failed" in ln or ln.startswith(("FAILED", "E "))]
        print("\n".join(tail[-40:]))
    print("\n| test | cases |\n|---|---|")
    for name, n in sorted(counts.items()):
        print(f"| {name} | {n:,} |")
    total = sum(counts.values())
    print(f"| **total** | **{total:,}** |")
    print(f"\n{total:,} cases in {seconds / 60:.1f} min on {args.jobs} process(es) "
          f"({seconds / max(total, 1) * 1000 * args.jobs:.1f} ms a case per process); "
          f"{'all passed' if not failed else f'{len(failed)} process(es) with failures'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
