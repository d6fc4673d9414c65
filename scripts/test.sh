#!/usr/bin/env bash
# Quick start: set up .venv on first use, then run the test suite (offline, CPU).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh torch,tf,server,distributed,dev,litert,jax,flax
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
# One test process per core (pytest-xdist), each with one OpenMP thread: torch and onnxruntime then do not
# fight over the cores (on 2 cores: ~10.5 min for the ~900 default tests; serially about twice that). ZOO_TEST_WORKERS=0 runs serially.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# --dist loadfile: a test file runs whole, in order, in one process (the API tests share one server per module).
exec .venv/bin/python -m pytest -p no:cacheprovider -n "${ZOO_TEST_WORKERS:-auto}" --dist loadfile "$@"
