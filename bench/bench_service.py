"""The service's two hot paths, measured over loopback against real servers.

(a) Artifact download: ``GET /v1/artifacts/{sha256}`` of a 100 MB artifact from ``zoo serve``
    (uvicorn, as the command runs it) against Debian's nginx serving the same file, both read by
    curl into /dev/null; the figure is zoo's median throughput over nginx's (target >= 0.8).
(b) Catalog reads: ``GET /v1/models/{id}`` under ``wrk -c 64 --latency``: requests per second and
    the p99 latency, with the configuration (server processes, event loop, HTTP parser, database).

    .venv/bin/python bench/bench_service.py                    # both, SQLite registry
    .venv/bin/python bench/bench_service.py --database-url postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/bench_service.py --only download --repeat 9 --json /tmp/service.json

Needs ``nginx``, ``wrk`` and ``curl`` on PATH (Debian: ``apt-get install -y nginx wrk curl``). nginx
runs as a child process with a generated configuration on a free port, never as a system service.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from serverproc import free_port, stop_process  # noqa: E402 - the tests' own process helpers

MODEL_ID = "zoo-bench/resnet-like"
NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    types {{ application/octet-stream onnx; }}
    server {{
        listen 127.0.0.1:{port};
        root {files};
        location / {{ }}
    }}
}}
"""


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s:\n{log.read_text()[-2000:]}")


# --- set-up ---------------------------------------------------------------------------------------------
def make_home(root: Path, size_mb: int, database_url: str | None) -> tuple[dict[str, str], str, Path]:
    """A ZOO_HOME holding one indexed model and a ``size_mb`` artifact of random bytes: env, sha256, file."""
    from zoo.pipeline import index_artifact
    from zoo.registry.index import Registry
    from zoo.registry.records import ModelRecord
    from zoo.settings import Settings
    from zoo.storage.artifacts import ArtifactStore

    env = {**os.environ, "ZOO_HOME": str(root / "zoo"), "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "ZOO_WORKERS": "0"}
    env.pop("ZOO_DISPATCHER", None)
    env.pop("ZOO_STORAGE", None)
    if database_url:
        env["ZOO_DATABASE_URL"] = database_url
    settings = Settings.from_env(env)
    registry, store = Registry(settings), ArtifactStore(settings.home)
    record = ModelRecord(id=MODEL_ID, source="hf", name=MODEL_ID, repo_id=MODEL_ID, library="timm", arch="resnet50",
                         task="image-classification", license="apache-2.0", num_classes=1000,
                         input_spec=[{"name": "pixel_values", "shape": ["batch", 3, 224, 224], "dtype": "float32"}],
                         preprocessing={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                        "input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 0.95})
    registry.upsert(record)
    rng = os.urandom
    with store.staging() as staged:
        with open(staged / "model.onnx", "wb") as f:
            for _ in range(size_mb):
                f.write(rng(1024 * 1024))
        manifest = {"model": MODEL_ID, "revision": "b" * 40, "format": "onnx",
                    "parity": {"passed": True, "max_abs_diff": 1e-6, "outputs": {"logits": {"max_abs_diff": 1e-6}}},
                    "conversion": {"exporter": "dynamo", "opset": 18}}
        art = store.publish(staged, "model.onnx", manifest, verified=True)
    index_artifact(registry, uuid.uuid4().hex + uuid.uuid4().hex, art, manifest)
    registry.add_revision(MODEL_ID, "b" * 40, [])
    return env, art.primary_entry()["sha256"], art.primary_path


def start_zoo(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = root / "zoo-serve.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--workers", "0",
                                 "--log-level", "warning"], env=env, stdout=out, stderr=out, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/readyz", proc, log)
    return proc, url


def start_nginx(root: Path, files: Path) -> tuple[subprocess.Popen, str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, files=files))
    log = root / "nginx-error.log"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/model.onnx", proc, log, timeout=30)
    return proc, url


# --- (a) downloads ----------------------------------------------------------------------------------------
def curl_once(url: str) -> float:
    """One download into /dev/null; bytes per second as curl measured it."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
                          url], capture_output=True, text=True, timeout=600, check=True).stdout.split()
    if out[0] != "200":
        raise SystemExit(f"{url}: HTTP {out[0]}")
    return float(out[2])


def check_bytes(url: str, sha256: str) -> None:
    h = hashlib.sha256()
    with httpx.stream("GET", url, timeout=600) as response:
        for chunk in response.iter_bytes(1 << 20):
            h.update(chunk)
    if h.hexdigest() != sha256:
        raise SystemExit(f"{url} served other bytes than the artifact")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_download(zoo: tuple[int, str], nginx: tuple[int, str], sha: str, size: int, repeat: int) -> dict:
    """Median throughput of each side, and the server CPU each spends per GB: a figure that a busy
    machine disturbs less than wall time."""
    sides = {"zoo": (zoo[0], f"{zoo[1]}/v1/artifacts/{sha}"), "nginx": (nginx[0], f"{nginx[1]}/model.onnx")}
    for _, url in sides.values():
        check_bytes(url, sha)
        curl_once(url)  # warm: page cache, connections, code paths
    speeds: dict[str, list[float]] = {"zoo": [], "nginx": []}
    cpu = {"zoo": 0.0, "nginx": 0.0}
    order = ["zoo", "nginx"]
    for i in range(repeat):  # ABBA: drift hits both sides alike
        for side in order if i % 2 == 0 else order[::-1]:
            pid, url = sides[side]
            before = cpu_seconds(pid)
            speeds[side].append(curl_once(url))
            cpu[side] += cpu_seconds(pid) - before
    med = {side: statistics.median(v) for side, v in speeds.items()}
    per_gb = {side: cpu[side] / (repeat * size / 1e9) for side in cpu}
    return {"zoo_MBps": med["zoo"] / 1e6, "nginx_MBps": med["nginx"] / 1e6, "ratio": med["zoo"] / med["nginx"],
            "server_cpu_s_per_GB": per_gb, "runs": {side: [round(s / 1e6, 1) for s in v] for side, v in speeds.items()}}


# --- (b) catalog reads -----------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def bench_catalog(zoo_url: str, seconds: int, connections: int, threads: int) -> dict:
    url = f"{zoo_url}/v1/models/{MODEL_ID}"
    response = httpx.get(url, timeout=30)
    if response.status_code != 200 or response.json()["id"] != MODEL_ID:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:300]}")
    subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", "3s", url], capture_output=True,
                   check=True)  # warm-up
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "--timeout", "10s", url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": rps, "p50_ms": float(p50.group(1)) * _UNITS[p50.group(2)],
            "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)], "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None, "connections": connections,
            "threads": threads, "seconds": seconds, "wrk": out}


def environment(database_url: str | None) -> dict:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    from zoo.versions import dist_version

    return {"server": f"zoo serve: 1 uvicorn process ({loop} loop, {http} parser), local worker pool 0",
            "database": "PostgreSQL" if database_url and database_url.startswith("postgresql") else "SQLite (WAL)",
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "uvicorn": dist_version("uvicorn"), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
            "python": platform.python_version(), "machine": platform.machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("download", "catalog"))
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7, help="downloads per side (default 7)")
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration (default 15)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--database-url", help="registry on this SQLAlchemy URL (default: SQLite in ZOO_HOME)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "curl"):
        if not shutil.which(tool) and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install -y nginx wrk curl)")
    root = Path(tempfile.mkdtemp(prefix="zoo-bench-service-"))
    report: dict = {"environment": environment(args.database_url), "size_mb": args.size_mb}
    procs: list[subprocess.Popen] = []
    try:
        env, sha, path = make_home(root, args.size_mb, args.database_url)
        zoo, zoo_url = start_zoo(root, env)
        procs.append(zoo)
        if args.only != "catalog":
            nginx, nginx_url = start_nginx(root, path.parent)
            procs.append(nginx)
            report["download"] = bench_download((zoo.pid, zoo_url), (nginx.pid, nginx_url), sha,
                                                path.stat().st_size, args.repeat)
            d = report["download"]
            cpu = d["server_cpu_s_per_GB"]
            print(f"download {args.size_mb} MB: zoo {d['zoo_MBps']:.0f} MB/s, nginx {d['nginx_MBps']:.0f} MB/s, "
                  f"ratio {d['ratio']:.2f} (target >= 0.8); server CPU per GB: zoo {cpu['zoo']:.2f} s, "
                  f"nginx {cpu['nginx']:.2f} s\n  runs (MB/s) {d['runs']}")
        if args.only != "download":
            report["catalog"] = bench_catalog(zoo_url, args.seconds, args.connections, args.threads)
            c = report["catalog"]
            print(f"GET /v1/models/{{id}}: {c['requests_per_s']:.0f} req/s, p50 {c['p50_ms']:.1f} ms, "
                  f"p99 {c['p99_ms']:.1f} ms (wrk -t{c['threads']} -c{c['connections']} -d{c['seconds']}s; "
                  f"non-2xx {c['non_2xx']})")
        print("config: " + "; ".join(f"{k} {v}" for k, v in report["environment"].items()))
    finally:
        for proc in procs:
            stop_process(proc, timeout=30)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
