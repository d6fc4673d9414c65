#!/usr/bin/env bash
# Create .venv and install zoo into it. With no argument: the quick start's one set-up, what every README
# command needs (conversions with PyTorch and TensorFlow, `zoo serve`, `zoo worker`, the tests). With an
# argument: those extras only, e.g. ./scripts/setup.sh torch,server
# Idempotent: installs again only when pyproject.toml changed or extras are asked for that are not installed.
# Details and what each extra brings: README.md, section "Installing".
set -euo pipefail
cd "$(dirname "$0")/.."
QUICKSTART_EXTRAS="torch,tf,server,distributed,dev,litert,jax,flax"
EXTRAS="${1:-$QUICKSTART_EXTRAS}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { echo "zoo setup: zoo needs Python 3.10 or later; set PYTHON=python3.11 (say)" >&2; exit 1; }
    "$PY" -m venv .venv
fi
STAMP=".venv/.zoo-installed"
PYPROJECT="$(sha256sum pyproject.toml | cut -c1-16)"
# The stamp holds the pyproject hash and the extras installed: a smaller request after a bigger one installs nothing.
wanted_missing() {
    [ -f "$STAMP" ] || return 0
    read -r stamp_hash stamp_extras < "$STAMP" || return 0
    [ "$stamp_hash" = "$PYPROJECT" ] || return 0
    local e
    for e in ${EXTRAS//,/ }; do
        [[ ",$stamp_extras," == *",$e,"* ]] || return 0
    done
    return 1
}
if wanted_missing; then
    echo "zoo setup: installing zoo[$EXTRAS] into .venv (the first run downloads PyTorch and TensorFlow:" \
         "a few minutes; README.md, 'Installing')..." >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    # Plain torch + torchvision from the index resolve to a matching pair; timm imports torchvision.
    .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
    if [[ ",$EXTRAS," == *",torch,"* ]]; then
        .venv/bin/python -c "import timm, torchvision, onnxruntime" 2>/dev/null \
            || { echo "zoo setup: torch/torchvision/timm do not import together; see README.md, 'Installing'" >&2; exit 1; }
    fi
    if [[ ",$EXTRAS," == *",tf,"* ]]; then  # onnx2tf declares no dependencies: prove its imports resolve
        TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -c "import onnx2tf, tf2onnx, tf_keras" >/dev/null 2>&1 \
            || { echo "zoo setup: onnx2tf/tf2onnx do not import; check the tf extra's pins in pyproject.toml" >&2; exit 1; }
    fi
    if [[ ",$EXTRAS," == *",litert,"* ]]; then
        .venv/bin/python -c "import litert_torch, ai_edge_litert.interpreter, ai_edge_quantizer" >/dev/null 2>&1 \
            || { echo "zoo setup: the litert extra does not import; check its pins in pyproject.toml" >&2; exit 1; }
    fi
    if [[ ",$EXTRAS," == *",flax,"* ]]; then  # and the shared typing-extensions pin held (litert-torch's xdsl)
        .venv/bin/python -c "import flax.nnx, jax2onnx, orbax.checkpoint, optax" >/dev/null 2>&1 \
            || { echo "zoo setup: the flax extra does not import; check its pins in pyproject.toml" >&2; exit 1; }
    fi
    if [[ ",$EXTRAS," == *",server,"* ]]; then
        .venv/bin/python -c "import fastapi, uvicorn, fastapi_offline" \
            || { echo "zoo setup: the server extra does not import" >&2; exit 1; }
    fi
    echo "$PYPROJECT $EXTRAS" > "$STAMP"
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
