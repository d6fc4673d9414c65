#!/usr/bin/env bash
# Quick start: set up .venv on first use, then run zoo, e.g.
#   ./scripts/zoo.sh pull resnet50 --format onnx
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh torch >&2
exec .venv/bin/zoo "$@"
