# zoo's server image: `zoo serve` with its embedded job workers, and every conversion it serves
# (PyTorch, TensorFlow/TFLite, ONNX), as a non-root user.
#   docker build -t zoo .                       (or ./scripts/image.sh: podman, a local base image)
#   docker run -d -p 8000:8000 -v zoo-cache:/cache zoo
#   docker run --rm -v zoo-cache:/cache zoo pull resnet50 --format onnx   (any zoo command)
# Build arguments: BASE (a Debian-like image with Python >= 3.10), EXTRAS (pyproject extras), TORCH_INDEX_URL
# (where CPU builds of torch and torchvision come from; empty: PyPI's default build), TORCH_WHEEL_DIR (a folder
# mounted into the build holding the torch and torchvision wheels to use instead), PIP_CERT (a CA bundle mounted into the build, for a
# network whose TLS proxy signs with its own CA).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG EXTRAS=server,torch,tf,postgres
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_WHEEL_DIR=
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    ZOO_HOME=/cache/zoo \
    HF_HOME=/cache/huggingface \
    KERAS_HOME=/cache/keras \
    ZOO_HOST=0.0.0.0 \
    ZOO_PORT=8000 \
    PATH=/opt/zoo/bin:$PATH

# A virtual environment: the same layout on python:*-slim and on a plain Debian base with python3-venv.
RUN python3 -m venv /opt/zoo && pip install --upgrade pip setuptools

# torch and torchvision first, CPU builds where the index offers them (a few hundred MB instead of the CUDA
# build's GBs; the two must come from the same index: PyPI's torchvision needs PyPI's torch); the rest is then
# resolved against what is installed here (a constraint), never replacing it.
RUN set -eu; \
    if [ -n "$TORCH_WHEEL_DIR" ]; then \
        pip install "$TORCH_WHEEL_DIR"/*.whl; \
    elif [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --retries 1 --timeout 30 --index-url "$TORCH_INDEX_URL" torch torchvision \
        || echo "zoo image: $TORCH_INDEX_URL is unreachable; torch comes from PyPI (its default build)"; \
    fi; \
    pip list --format freeze 2>/dev/null | grep -E '^(torch|torchvision)==' > /opt/zoo/torch-constraint.txt || :; \
    cat /opt/zoo/torch-constraint.txt

# The dependencies of the extras first, read from pyproject.toml: a layer that a code change does not rebuild.
COPY pyproject.toml /tmp/zoo-pyproject.toml
RUN python -c "import re, tomllib; p = tomllib.load(open('/tmp/zoo-pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; want = '$EXTRAS'.split(','); reqs = list(p['dependencies']); \
expand = lambda e: [r for x in extras[e] for r in (expand_all(x) if x.startswith('zoo-hub[') else [x])]; \
expand_all = lambda x: [r for e in re.findall(r'[\\w-]+', x.split('[', 1)[1]) for r in expand(e)]; \
[reqs.extend(expand(e)) for e in want if e]; print('\\n'.join(dict.fromkeys(reqs)))" > /tmp/zoo-requirements.txt \
    && cat /tmp/zoo-requirements.txt \
    && pip install -c /opt/zoo/torch-constraint.txt -r /tmp/zoo-requirements.txt \
    && rm -rf /root/.cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY zoo ./zoo
COPY registry ./registry
COPY converters ./converters
COPY api ./api
RUN pip install --no-deps . \
    && zoo --version \
    && python -c "import fastapi, uvicorn, fastapi_offline" \
    && if [ "${EXTRAS#*torch}" != "$EXTRAS" ]; then python -c "import torch, timm, torchvision, onnxruntime"; fi \
    && if [ "${EXTRAS#*tf}" != "$EXTRAS" ]; then python -c "import tensorflow, tf2onnx, onnx2tf, tf_keras"; fi

RUN useradd --create-home --uid 1000 zoo && mkdir -p /cache && chown zoo /cache
USER zoo
VOLUME ["/cache"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${ZOO_PORT}/healthz', timeout=4)" || exit 1
ENTRYPOINT ["zoo"]
CMD ["serve"]
