#!/usr/bin/env bash
# Set up a fresh machine and run the main job: the diagnostic report of sample_logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e .
steadytrain report sample_logs -o artifacts/report.html --json artifacts/report.json --no-cache
