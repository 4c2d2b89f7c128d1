#!/usr/bin/env bash
# Set up a fresh machine and run the checks: ruff, mypy, then the whole test suite (the README's test command).
# All three run even when one fails, so one run shows every problem; the exit code is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0" -e ".[dev,probe,browser,ray]" || exit 1
status=0
echo "== ruff"
python -m ruff check . || status=1
echo "== mypy"
python -m mypy || status=1
echo "== pytest"
python -m pytest -q "$@" || status=1
exit $status
