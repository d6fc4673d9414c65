# zoo with PyTorch -> ONNX conversion. Build: docker build -t zoo .
# Run:   docker run --rm -v zoo-cache:/cache zoo pull resnet50 --format onnx
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ZOO_HOME=/cache/zoo \
    HF_HOME=/cache/huggingface

WORKDIR /app
COPY pyproject.toml README.md ./
COPY zoo ./zoo
COPY registry ./registry
COPY converters ./converters
COPY api ./api
RUN pip install --upgrade pip && pip install ".[torch]" && zoo --version

RUN useradd --create-home --uid 1000 zoo && mkdir -p /cache && chown zoo /cache
USER zoo
VOLUME ["/cache"]
ENTRYPOINT ["zoo"]
CMD ["--help"]
