"""A real ``zoo serve`` (uvicorn) on 127.0.0.1 and a free port, in its own process.

The server runs through a small launcher that, at interpreter exit, writes the
names in ``sys.modules`` to ``modules_path``: tests read which libraries the API
process imported without any debug code in zoo itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
_LAUNCHER = """
import atexit, json, sys
def _dump(path=sys.argv[1]):
    with open(path, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(_dump)
from zoo.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZooServer:
    def __init__(self, home: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.home = home
        self.workers = workers
        self.env = {**os.environ, **(env or {}), "ZOO_HOME": str(home)}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = home / "server.log"
        self.modules_path = home / "server-modules.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def start(self, timeout: float = 180) -> "ZooServer":
        self.home.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            cmd = [sys.executable, "-c", _LAUNCHER, str(self.modules_path), "serve", "--port", str(self.port),
                   "--workers", str(self.workers), "--log-level", "warning"]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, cwd=REPO_ROOT)
            if self._wait_ready(timeout):
                return self
        raise RuntimeError(f"zoo serve did not become ready:\n{self.log()[-3000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log().lower():
                    return False
                raise RuntimeError(f"zoo serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"zoo serve not ready after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        return stop_process(self.proc, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def modules(self) -> set[str]:
        return set(json.loads(self.modules_path.read_text()))

    def token(self, scope: str) -> str:
        """A token made by the real CLI against the server's database."""
        proc = subprocess.run([sys.executable, "-m", "zoo", "token", "create", "--scope", scope], env=self.env,
                              capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stderr
        token = proc.stdout.strip()
        assert re.fullmatch(r"zoo_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token), token
        return token

    def __enter__(self) -> "ZooServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
    """Send ``sig`` and wait (SIGKILL after ``timeout``); the exit status (None if never started)."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_job(client: httpx.Client, job_id: str, until, timeout: float = 300) -> dict:
    """Poll GET /v1/jobs/{id} until ``until(job)`` holds; the last job seen."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job never reached the expected state: {job}")
        time.sleep(0.1)


def finished(job: dict) -> bool:
    return job["state"] in ("succeeded", "failed", "canceled")


def job_processes(job_id: str) -> list[int]:
    """Pids of live job processes (python -m zoo.runner --job JOB_ID), read from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"zoo.runner" in argv and job_id.encode() in argv and state != "Z":
            pids.append(int(entry.name))
    return pids


def pid_gone(pid: int) -> bool:
    """No such process any more (killed and reaped: not even a zombie)."""
    return not Path(f"/proc/{pid}").exists()
