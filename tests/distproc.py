"""Processes of a distributed zoo for tests: an S3-compatible server and ``zoo worker`` processes.

The S3 server is moto's (``python -m moto.server``): a real HTTP server speaking
the S3 protocol on 127.0.0.1, driven by the real boto3 client. Workers are
``python -m zoo worker`` processes (Celery, threads pool) against the machine's
real Redis and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serverproc import REPO_ROOT, free_port, stop_process

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "zoo-test", "AWS_SECRET_ACCESS_KEY": "zoo-test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = root / "s3.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "S3Server":
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=log, env={**os.environ, **S3_CREDENTIALS})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                httpx.get(self.url, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the S3 server did not start")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def objects(self, bucket: str) -> dict[str, bytes]:
        client = self.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


class WorkerProc:
    """One ``zoo worker`` process with its own environment (its own ZOO_HOME: another machine)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, concurrency: int = 1) -> None:
        self.name = name
        self.env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)}
        self.concurrency = concurrency
        self.log_path = log_dir / f"worker-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "zoo", "worker", "--concurrency",
                                          str(self.concurrency)], env=self.env, stdout=log, stderr=log, cwd=REPO_ROOT)
        return self

    def wait_ready(self, timeout: float = 120) -> "WorkerProc":
        """Until Celery says the worker consumes its queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} not ready after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        return stop_process(self.proc, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def redis_clear(prefix: str, url: str = "redis://127.0.0.1:6379/0") -> None:
    """Delete every broker key of one test's queue (they all start with ``prefix``)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
