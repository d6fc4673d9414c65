"""A soak of the distributed mode under faults: jobs submitted at random for a few minutes while
workers are SIGKILLed at random (and replaced) and Redis restarts once (every message lost). Then
the run drains, and the job table and event log are tallied: jobs submitted / completed / failed /
lost (never finished) / converted twice (a request whose artifact was published by more than one
conversion).

A real deployment on this machine: PostgreSQL (a fresh schema), a private ``redis-server`` without
persistence, moto's S3 server over HTTP, ``zoo serve`` (``ZOO_DISPATCHER=celery``, ``ZOO_STORAGE=s3``)
and ``zoo worker`` processes, each with its own ZOO_HOME and Hugging Face cache (another machine). The
requests convert a tiny timm model (seeded random weights, ``tests/builders.py``) to ONNX with a few
opsets, so identical requests recur: they must join the job in flight or be answered from the cache.

    .venv/bin/python bench/bench_soak.py [--minutes 3] [--workers 2] [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "bench"))
REPO = "timm/test_resnet.r160_in1k"
OPSETS = (13, 14, 15, 16, 17, 18)


def run(minutes: float, n_workers: int, seed: int, lease: float, drain_s: float, root: Path) -> dict:
    import httpx
    import sqlalchemy as sa
    from bench_broker_loss import pg_schema
    from builders import timm_repo, write_hf_cache
    from distproc import S3_CREDENTIALS, S3Server, WorkerProc
    from redisproc import RedisServer
    from serverproc import ZooServer

    rng = random.Random(seed)
    files = timm_repo("test_resnet.r160_in1k")
    url, drop = pg_schema()
    redis = RedisServer(root / "redis").start()
    s3 = S3Server(root / "s3").start()
    bucket = f"zoo-soak-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    base.update(S3_CREDENTIALS, ZOO_DATABASE_URL=url, ZOO_DISPATCHER="celery", ZOO_BROKER_URL=redis.url,
                ZOO_QUEUE=f"zoo-soak-{uuid.uuid4().hex[:8]}", ZOO_STORAGE="s3", ZOO_S3_BUCKET=bucket,
                ZOO_S3_ENDPOINT_URL=s3.url, ZOO_JOB_LEASE=str(lease), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def node(name: str) -> dict[str, str]:
        hf = root / name / "hf"
        write_hf_cache(hf / "hub", REPO, files)
        return {**base, "ZOO_HOME": str(root / name / "zoo"), "HF_HOME": str(hf)}

    api = ZooServer(root / "api" / "zoo", node("api"), workers=0)
    workers: list[WorkerProc] = []
    events: list[tuple[float, str]] = []
    started = time.monotonic()

    def note(what: str) -> None:
        events.append((round(time.monotonic() - started, 1), what))
        print(f"[{events[-1][0]:7.1f}s] {what}", flush=True)

    def add_worker() -> None:
        worker = WorkerProc(f"w{len(workers)}", node(f"w{len(workers)}"), root)
        workers.append(worker.start())

    ids: list[str] = []
    try:
        api.start()
        token = api.token("write")
        client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        for _ in range(n_workers):
            add_worker()
        end = time.monotonic() + minutes * 60
        redis_at = time.monotonic() + minutes * 60 * rng.uniform(0.35, 0.65)
        next_kill = time.monotonic() + rng.uniform(20, 40)
        kills = 0
        redis_restarted = False
        while time.monotonic() < end:
            opset = rng.choice(OPSETS)
            try:
                response = client.post("/v1/jobs", json={"model": REPO, "options": {"exporter": "torchscript",
                                                                                     "opset": opset}})
                if response.status_code in (200, 202):
                    ids.append(response.json()["id"])
                else:
                    note(f"submit answered {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                note(f"submit failed: {exc}")
            if time.monotonic() >= next_kill:
                alive = [w for w in workers if w.proc.poll() is None]
                if alive:
                    victim = rng.choice(alive)
                    victim.proc.send_signal(signal.SIGKILL)
                    victim.proc.wait()
                    kills += 1
                    note(f"SIGKILLed worker {victim.name}; starting a replacement")
                    add_worker()
                next_kill = time.monotonic() + rng.uniform(20, 40)
            if not redis_restarted and time.monotonic() >= redis_at:
                redis.kill()
                note("Redis SIGKILLed (every message lost)")
                time.sleep(2)
                redis.start()
                note("Redis back")
                redis_restarted = True
            time.sleep(rng.uniform(1.0, 4.0))
        note(f"submitting stopped: {len(ids)} submissions; draining (up to {drain_s:g} s)")
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            states = Counter(client.get(f"/v1/jobs/{j}").json()["state"] for j in set(ids))
            if not states.keys() & {"queued", "running"}:
                break
            time.sleep(2)
        jobs = {j: client.get(f"/v1/jobs/{j}").json() for j in set(ids)}
        from zoo import db

        engine = db.get_engine(url)
        with engine.connect() as conn:
            keys = dict(conn.execute(sa.select(db.jobs.c.id, db.jobs.c.key)).all())
            publishes = Counter(keys[row.job_id] for row in conn.execute(sa.select(db.job_events.c.job_id,
                                                                                  db.job_events.c.data)
                                                                        .where(db.job_events.c.kind == "stage"))
                                if (row.data or {}).get("stage") == "publish")
        states = Counter(j["state"] for j in jobs.values())
        figures = {
            "minutes": minutes, "workers": n_workers, "lease_s": lease, "seed": seed,
            "submissions": len(ids), "jobs": len(jobs), "distinct_requests": len({keys[j] for j in jobs}),
            "completed": states.get("succeeded", 0), "failed": states.get("failed", 0),
            "lost": states.get("queued", 0) + states.get("running", 0),
            "converted_twice": sum(1 for n in publishes.values() if n > 1),
            "conversions": sum(publishes.values()),
            "cached_answers": sum(1 for j in jobs.values() if (j.get("result") or {}).get("cached")),
            "attempts": dict(Counter(j["attempts"] for j in jobs.values())),
            "errors": dict(Counter((j.get("error") or {}).get("error") for j in jobs.values() if j.get("error"))),
            "worker_kills": kills, "redis_restarts": int(redis_restarted),
            "wall_s": round(time.monotonic() - started, 1), "timeline": events,
        }
        db.dispose_engine(url)
        return figures
    finally:
        for worker in workers:
            worker.stop(timeout=20)
        api.stop()
        s3.stop()
        redis.stop()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long jobs are submitted (10 for the full soak)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the last jobs to finish")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zoo-bench-soak-"))
    figures = run(args.minutes, args.workers, args.seed, args.lease, args.drain, root)
    print(json.dumps({k: v for k, v in figures.items() if k != "timeline"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    import shutil

    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
