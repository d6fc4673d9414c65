"""A private ``redis-server`` on a free port, for tests and benches that restart the broker.

No persistence (``--save ''``, no AOF): a restart loses every queued message, as the
fault run's Redis restart did.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from serverproc import free_port, stop_process


class RedisServer:
    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        with open(self.root / "redis.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                          "--appendonly", "no", "--dir", str(self.root)], stdout=log, stderr=log)
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return self
            except redis.RedisError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {(self.root / 'redis.log').read_text()[-1000:]}")
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: every message it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
