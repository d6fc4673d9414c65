#!/usr/bin/env bash
# Quick start: set up .venv on first use, then run the test suite (offline, CPU).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh torch,tf,server,distributed,dev
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
