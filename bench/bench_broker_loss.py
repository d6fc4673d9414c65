"""Broker loss: jobs queued in Redis, then Redis restarts and every message is gone. How long from
Redis coming back until every stranded job is running again (claimed by a worker), against the
sweep interval (half a lease)?

A real deployment on this machine: PostgreSQL (a fresh schema), a private ``redis-server`` without
persistence (tests/redisproc.py), ``zoo serve`` with ``ZOO_DISPATCHER=celery`` and ``zoo worker``
processes. The workers are paused (SIGSTOP) while the jobs are submitted, so every message waits in
Redis; Redis is then SIGKILLed and started again (empty), and the workers resumed. The jobs name repos
that the workers' offline cache lacks, so each fails fast once it runs: what is measured is that it
runs, not a conversion.

    .venv/bin/python bench/bench_broker_loss.py [--jobs 10] [--workers 2] [--lease 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
POSTGRES = os.environ.get("ZOO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_schema() -> tuple[str, callable]:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES)
    schema = f"zoo_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")

    return f"{POSTGRES}?options=-csearch_path%3D{schema}", drop


def run(n_jobs: int, n_workers: int, lease: float, root: Path) -> dict:
    import httpx
    from distproc import WorkerProc
    from redisproc import RedisServer
    from serverproc import ZooServer

    url, drop = pg_schema()
    redis = RedisServer(root / "redis").start()
    queue = f"zoo-bench-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    env.update(ZOO_DATABASE_URL=url, ZOO_DISPATCHER="celery", ZOO_BROKER_URL=redis.url, ZOO_QUEUE=queue,
               ZOO_JOB_LEASE=str(lease), HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf"))
    api = ZooServer(root / "api", env, workers=0)
    workers = [WorkerProc(f"w{i}", {**env, "ZOO_HOME": str(root / f"w{i}")}, root) for i in range(n_workers)]
    try:
        api.start()
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        token = api.token("write")
        client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        for w in workers:
            w.proc.send_signal(signal.SIGSTOP)
        ids = [client.post("/v1/jobs", json={"model": f"zoo-bench/absent-{i}"}).json()["id"] for i in range(n_jobs)]
        from zoo.service.broker import broker_job_ids

        in_redis = len(broker_job_ids(redis.url, queue) & set(ids))
        redis.kill()
        time.sleep(1.0)
        redis.start()
        back = time.monotonic()
        lost = len(set(ids) - broker_job_ids(redis.url, queue))
        for w in workers:
            w.proc.send_signal(signal.SIGCONT)
        running_at: dict[str, float] = {}
        resent_at: dict[str, float] = {}  # back in the broker (or already claimed)
        finished_at: dict[str, float] = {}
        deadline = back + 20 * lease + 120
        while len(finished_at) < n_jobs and time.monotonic() < deadline:
            try:
                present = broker_job_ids(redis.url, queue)
            except Exception:  # noqa: BLE001 - read again on the next lap
                present = set()
            for job_id in ids:
                if job_id in present:
                    resent_at.setdefault(job_id, time.monotonic() - back)
                if job_id in finished_at:
                    continue
                job = client.get(f"/v1/jobs/{job_id}").json()
                now = time.monotonic() - back
                if job["state"] != "queued":
                    running_at.setdefault(job_id, now)
                    resent_at.setdefault(job_id, now)
                if job["state"] in ("succeeded", "failed", "canceled"):
                    finished_at[job_id] = now
            time.sleep(0.1)
        jobs = [client.get(f"/v1/jobs/{j}").json() for j in ids]
        ready = client.get("/readyz").json()["checks"]["dispatcher"]
        sweep = min(max(lease / 2, 0.5), 15.0)
        return {
            "jobs": n_jobs, "workers": n_workers, "lease_s": lease, "sweep_interval_s": sweep,
            "resend_after_s": sweep,  # ZOO_JOB_RESEND_S unset: one sweep interval
            "messages_before_restart": in_redis, "messages_lost": lost,
            "all_running_after_s": round(max(running_at.values()), 2) if len(running_at) == n_jobs else None,
            "first_running_after_s": round(min(running_at.values()), 2) if running_at else None,
            "all_finished_after_s": round(max(finished_at.values()), 2) if len(finished_at) == n_jobs else None,
            "all_sent_again_after_s": round(max(resent_at.values()), 2) if len(resent_at) == n_jobs else None,
            "attempts": sorted(j["attempts"] for j in jobs), "states": sorted({j["state"] for j in jobs}),
            "errors": sorted({(j.get("error") or {}).get("error", "") for j in jobs}),
            "resent_by_api": ready.get("resent"), "workers_alive": ready.get("workers_alive"),
        }
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
            w.stop()
        api.stop()
        redis.stop()
        from zoo import db

        db.dispose_engine(url)
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lease", type=float, default=10.0, help="ZOO_JOB_LEASE (the sweep runs every half lease)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zoo-bench-broker-"))
    figures = run(args.jobs, args.workers, args.lease, root)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
