#!/usr/bin/env bash
# Quick start: set up .venv on first use (the same one set-up as ./scripts/test.sh), then run zoo, e.g.
#   ./scripts/zoo.sh pull resnet50 --format onnx
# Paths you pass are relative to where you are, as with zoo itself.
# A pull that cannot reach the Hugging Face hub (exit 4: no network, a proxy, a firewall) goes on with
# `zoo demo`: the same pipeline on two small models built here with random weights, then the HTTP service.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh" >&2
status=0
"$ROOT/.venv/bin/zoo" "$@" || status=$?
if [ "$status" -eq 4 ] && [ "${1:-}" = pull ] && [ -z "${ZOO_SERVER:-}" ]; then
    echo "zoo.sh: the hub cannot be reached from here (exit 4 above), so here is \`zoo demo\` instead: two small" \
         "models built on this machine, nothing downloaded (README.md, 'No hub access')." >&2
    exec "$ROOT/.venv/bin/zoo" demo
fi
exit "$status"
