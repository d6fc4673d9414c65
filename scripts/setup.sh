#!/usr/bin/env bash
# Create .venv and install zoo with the given extras (default: torch,dev).
# Idempotent: reinstalls only when pyproject.toml or the extras change.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-torch,dev}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
STAMP=".venv/.zoo-installed"
WANT="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "zoo setup: installing zoo[$EXTRAS] into .venv (first run downloads PyTorch, a few minutes)..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    # Plain torch + torchvision from the index resolve to a matching pair; timm imports torchvision.
    .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
    .venv/bin/python -c "import timm, torchvision, onnxruntime" 2>/dev/null \
        || { echo "zoo setup: torch/torchvision/timm do not import together; see README 'Installing'" >&2; exit 1; }
    if [[ ",$EXTRAS," == *",tf,"* ]]; then  # onnx2tf declares no dependencies: prove its imports resolve
        TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import onnx2tf, tf2onnx, tf_keras" >/dev/null 2>&1 \
            || { echo "zoo setup: onnx2tf/tf2onnx do not import; check the tf extra's pins in pyproject.toml" >&2; exit 1; }
    fi
    echo "$WANT" > "$STAMP"
fi
# The page tests (tests/test_web.py) drive Debian's headless Chromium through Playwright; Playwright's own
# browser download is never used. Installed here where missing and possible (root with apt-get).
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "zoo setup: installing chromium for the page tests (apt-get)..." >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >/dev/null \
            || { echo "zoo setup: apt-get install chromium failed; tests/test_web.py needs it" >&2; exit 1; }
    else
        echo "zoo setup: tests/test_web.py needs chromium: apt-get install -y chromium chromium-driver" >&2
    fi
fi
