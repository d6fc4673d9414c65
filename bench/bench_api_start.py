"""How long ``zoo serve`` takes from launch to a 200 on ``/readyz``: a fresh ZOO_HOME (the first start
indexes timm's catalog in a child process), then a second start on the same home, in local mode
(SQLite, embedded worker pool) and in distributed mode (PostgreSQL, Celery on Redis, S3 settings).

    .venv/bin/python bench/bench_api_start.py [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "bench"))


def start_time(home: Path, env: dict[str, str]) -> float:
    from serverproc import ZooServer

    server = ZooServer(home, env, workers=int(env.get("ZOO_WORKERS", "1")))
    started = time.monotonic()
    server.start(timeout=300)
    took = time.monotonic() - started
    server.stop()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from bench_broker_loss import pg_schema

    root = Path(tempfile.mkdtemp(prefix="zoo-bench-start-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    base.update(HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1")
    url, drop = pg_schema()
    modes = {
        "local": {**base},
        "distributed": {**base, "ZOO_DATABASE_URL": url, "ZOO_DISPATCHER": "celery", "ZOO_WORKERS": "0",
                        "ZOO_QUEUE": f"zoo-bench-{uuid.uuid4().hex[:8]}", "ZOO_STORAGE": "s3",
                        "ZOO_S3_BUCKET": "unused", "ZOO_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
    }
    figures = {}
    try:
        for mode, env in modes.items():
            home = root / mode
            first = start_time(home, env)
            again = [start_time(home, env) for _ in range(args.repeat)]
            figures[mode] = {"first_start_s": round(first, 2), "warm_start_s": round(statistics.median(again), 2),
                             "warm_runs_s": [round(t, 2) for t in again]}
            print(mode, figures[mode], flush=True)
    finally:
        drop()
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
