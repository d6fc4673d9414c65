"""The distributed deployment end to end: a real uvicorn API with ``ZOO_DISPATCHER=celery``,
``zoo worker`` processes (Celery over the machine's real Redis), the registry and jobs in the
machine's real PostgreSQL (a fresh schema per test), artifacts in a real S3-compatible server
(moto's, over HTTP on 127.0.0.1, through boto3), and the remote CLI (``ZOO_SERVER``).

Each worker has its own ZOO_HOME and HF_HOME, as a worker on another machine would; the API's
ZOO_HOME never holds an artifact, so what it serves comes from the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from builders import write_hf_cache
from conftest import _DELETED_ENV, BROKER_URL, TIMM_REPO, postgres_schema, require_redis, run_zoo
from distproc import S3_CREDENTIALS, S3Server, WorkerProc, redis_clear
from serverproc import ZooServer, finished, free_port, job_processes, pid_gone, wait_job

FRAMEWORKS = {"torch", "tensorflow", "keras", "timm", "transformers", "onnxruntime", "onnx", "tf2onnx"}
FAST = {"exporter": "torchscript"}  # the quicker exporter, where the exporter does not matter


# --- services -------------------------------------------------------------------------------------------------
def copy_index(sqlite_path: Path, url: str) -> None:
    """The timm catalog indexed once per session (SQLite), copied into a fresh database."""
    from zoo import db

    source = sa.create_engine(f"sqlite:///{sqlite_path}")
    target = db.get_engine(url)
    with source.connect() as src, target.begin() as dst:
        for table in (db.models, db.meta):
            rows = [dict(r) for r in src.execute(sa.select(table)).mappings()]
            if rows:
                dst.execute(sa.insert(table), rows)
    source.dispose()
    db.dispose_engine(url)


@pytest.fixture
def pg_url(timm_index_db):
    """A fresh PostgreSQL schema holding the timm index, dropped after the test."""
    with postgres_schema("zoo_dist") as url:
        copy_index(timm_index_db, url)
        yield url


@dataclass
class Stack:
    """One distributed deployment: shared settings, then a ZOO_HOME and HF cache per node."""

    root: Path
    base_env: dict[str, str]
    tiny_repos: dict
    workers: list[WorkerProc] = field(default_factory=list)
    servers: list[ZooServer] = field(default_factory=list)

    def node_env(self, node: str, home: Path | None = None) -> dict[str, str]:
        hf = self.root / node / "hf"
        write_hf_cache(hf / "hub", TIMM_REPO, self.tiny_repos[TIMM_REPO])
        home = home or self.root / node / "zoo"
        home.mkdir(parents=True, exist_ok=True)
        return {**self.base_env, "ZOO_HOME": str(home), "HF_HOME": str(hf)}

    def server(self, home: Path | None = None) -> ZooServer:
        env = self.node_env("api", home)
        server = ZooServer(Path(env["ZOO_HOME"]), env, workers=0)
        self.servers.append(server)
        return server.start()

    def worker(self, name: str, home: Path | None = None, concurrency: int = 1) -> WorkerProc:
        worker = WorkerProc(name, self.node_env(name, home), self.root, concurrency)
        self.workers.append(worker)
        return worker.start()

    def close(self) -> None:
        for process in self.workers + self.servers:
            process.stop()


@pytest.fixture
def stack(tmp_path, pg_url, s3, tiny_repos):
    require_redis()
    queue = f"zoo-test-{uuid.uuid4().hex[:10]}"
    bucket = f"zoo-test-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if k not in _DELETED_ENV}
    env.update(S3_CREDENTIALS, ZOO_DATABASE_URL=pg_url, ZOO_DISPATCHER="celery", ZOO_BROKER_URL=BROKER_URL,
               ZOO_QUEUE=queue, ZOO_STORAGE="s3", ZOO_S3_BUCKET=bucket, ZOO_S3_ENDPOINT_URL=s3.url,
               ZOO_JOB_LEASE="3", HF_HUB_OFFLINE="1", ZOO_DEBUG="1")
    deployment = Stack(tmp_path, env, tiny_repos)
    try:
        yield deployment
    finally:
        deployment.close()
        redis_clear(f"{queue}:", BROKER_URL)


def submit(client: httpx.Client, **options) -> dict:
    response = client.post("/v1/jobs", json={"model": "test_resnet", "options": {**FAST, **options}})
    assert response.status_code in (200, 202), response.text
    return response.json()


def stages_of(client: httpx.Client, job_id: str) -> list[str]:
    return [e["stage"] for e in events_of(client, job_id) if e["kind"] == "stage"]


def events_of(client: httpx.Client, job_id: str) -> list[dict]:
    """Every event of a finished job, from its SSE stream."""
    out, current = [], {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith(("event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
            elif not line and "event" in current:
                if current["event"] == "end":
                    return out
                out.append({"kind": current["event"], **json.loads(current["data"])})
                current = {}
    return out


def s3_blobs_are_whole(s3: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket is complete: blobs hash to their key, manifests name present blobs."""
    objects = s3.objects(bucket)
    for key, data in objects.items():
        if key.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == key.rsplit("/", 1)[1], key
        else:
            assert key.startswith("artifacts/") and key.endswith("/zoo.json"), key
            for entry in json.loads(data)["files"]:
                assert f"blobs/sha256/{entry['sha256']}" in objects
    return objects


def remote_pull(server: ZooServer, token: str, *args: str, home: Path) -> tuple[int, dict, str]:
    env = {"ZOO_SERVER": server.url, "ZOO_TOKEN": token, "ZOO_HOME": str(home)}
    proc = run_zoo("pull", "test_resnet", "--exporter", "torchscript", *args, "--json", env=env, timeout=300)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, proc.stderr


# --- the database under several workers (SQLite and PostgreSQL) ---------------------------------------------
def _race(n: int, work) -> list:
    """Run ``work(i)`` in ``n`` threads released together; their results (exceptions re-raised)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    failures: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results


def test_concurrent_workers_claim_each_job_exactly_once(database_url):
    from zoo import db
    from zoo.service.jobs import JobRequest, JobService

    service = JobService(db.get_engine(database_url), lease_s=60)
    ids = {service.submit(JobRequest(model="test_resnet", options={"opset": opset}))[0].id for opset in range(9, 24)}

    def drain(i: int) -> list[str]:
        mine = []
        while (job := service.claim(f"w{i}")) is not None:
            mine.append(job.id)
        return mine

    claimed = [job_id for mine in _race(6, drain) for job_id in mine]
    assert sorted(claimed) == sorted(ids)  # every job once: none lost, none run twice


def test_registry_writers_race_without_errors(database_url, tmp_path):
    """Workers that fetch the same repo, publish the same artifact or index the same catalog at
    once: each write is one INSERT ... ON CONFLICT, so none fails on PostgreSQL's row locks."""
    from zoo import db
    from zoo.pipeline import index_artifact
    from zoo.registry.index import Registry
    from zoo.registry.records import FileInfo, ModelRecord
    from zoo.settings import Settings
    from zoo.storage.artifacts import ArtifactStore

    settings = Settings.from_env({"ZOO_HOME": str(tmp_path / "zoo"), "ZOO_DATABASE_URL": database_url})
    registry = Registry(settings)
    store = ArtifactStore(settings.home)
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(b"onnx bytes")
        manifest = {"model": "org/m", "revision": "r" * 40, "format": "onnx", "parity": {"passed": True}}
        art = store.publish(staged, "model.onnx", manifest, verified=True)
    record = ModelRecord(id="org/m", source="hf", name="org/m", repo_id="org/m", library="transformers")
    files = [FileInfo(path="config.json", sha256="c" * 64, size=2)]

    def write(i: int) -> None:
        registry.upsert(record)
        registry.add_revision("org/m", "r" * 40, files)
        index_artifact(registry, "k" * 64, art, manifest)
        with registry.engine.begin() as conn:
            db.set_meta(conn, "probe", str(i))

    for _ in range(3):
        _race(8, write)
    assert registry.get("org/m") == record and registry.revision_files("org/m", "r" * 40) == files
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.artifacts)).scalar_one() == 1
        assert db.get_meta(conn, "probe") in {str(i) for i in range(8)}


def test_the_sweeper_requeues_jobs_whose_worker_died(database_url):
    from zoo import db
    from zoo.service.jobs import JobRequest, JobService

    now = [1000.0]
    service = JobService(db.get_engine(database_url), max_attempts=2, lease_s=10, clock=lambda: now[0])
    job, _ = service.submit(JobRequest(model="test_resnet"))
    assert service.claim("dead", job_id=job.id).attempts == 1
    assert service.requeue_lapsed() == []  # the lease holds
    now[0] += 11
    assert _race(4, lambda i: service.requeue_lapsed()).count([job.id]) == 1  # exactly one sweeper wins
    again = service.get(job.id)
    assert again.state == "queued" and again.lease_owner is None and again.attempts == 1
    assert service.heartbeat(job.id, "dead") == "lost"  # the dead worker's late beat changes nothing
    assert service.claim("second", job_id=job.id).attempts == 2
    now[0] += 11
    assert service.requeue_lapsed() == []  # out of attempts: failed, not requeued
    failed = service.get(job.id)
    assert failed.state == "failed" and failed.error["error"] == "job_crashed"
    other, _ = service.submit(JobRequest(model="test_resnet", options={"opset": 17}))
    service.claim("w", job_id=other.id)
    service.cancel(other.id)  # asked while running; then its worker died
    now[0] += 11
    assert service.requeue_lapsed() == [] and service.get(other.id).state == "canceled"


# --- end to end -------------------------------------------------------------------------------------------
def test_remote_pull_runs_on_a_worker_and_downloads_from_s3(stack, s3, tmp_path):
    api = stack.server()
    token = api.token("write")
    stack.worker("a")
    out = tmp_path / "client" / "model.onnx"
    code, result, stderr = remote_pull(api, token, "-o", str(out), home=tmp_path / "client-home")
    assert code == 0, stderr[-3000:]
    data = out.read_bytes()
    assert hashlib.sha256(data).hexdigest() == result["sha256"] and len(data) == result["size"]
    assert result["path"] == str(out) and result["verified"] and result["parity"]["passed"]
    assert not result["cached"] and result["model"] == TIMM_REPO and result["format"] == "onnx"
    assert set(result) >= {"model", "revision", "format", "path", "sha256", "size", "cached", "verified", "digest",
                           "artifact_dir", "parity", "conversion", "notes"}
    assert not (api.home / "artifacts").exists()  # the API node holds no artifact: the bytes came from S3
    bucket = stack.base_env["ZOO_S3_BUCKET"]
    objects = s3_blobs_are_whole(s3, bucket)
    assert objects[f"blobs/sha256/{result['sha256']}"] == data
    assert f"artifacts/{result['digest']}/zoo.json" in objects

    with api.client(token) as client:  # ranges pass through to S3; ETag is the sha256
        sha = result["sha256"]
        part = client.get(f"/v1/artifacts/{sha}", headers={"Range": "bytes=100-1123"})
        assert part.status_code == 206 and part.content == data[100:1124]
        assert part.headers["content-range"] == f"bytes 100-1123/{len(data)}"
        head = client.head(f"/v1/artifacts/{sha}")
        assert head.headers["etag"] == f'"{sha}"' and head.headers["content-length"] == str(len(data))
        assert client.get(f"/v1/artifacts/{'e' * 64}").status_code == 404

        # Another machine: worker b has neither the artifact nor a memo of it. Worker a stops first
        # (a warm shutdown), so b takes the next job; it finds the artifact indexed and fetches it.
        assert stack.workers[0].stop() == 0
        again = submit(client)  # the same request: answered by the API from the index and the bucket, no worker
        assert again["state"] == "succeeded" and again["result"]["cached"], again
        stack.worker("b")
        # another request key for the same artifact (a lax request: it may join no strict job) goes to worker b
        job = submit(client, allow_mismatch=True)
        done = wait_job(client, job["id"], finished, timeout=240)
        assert done["state"] == "succeeded" and done["result"]["cached"], done
        assert done["result"]["digest"] == result["digest"]
        assert "export" not in stages_of(client, job["id"])  # nothing converted again
    home_b = Path(stack.workers[1].env["ZOO_HOME"])
    from zoo.storage.artifacts import ArtifactStore

    store = ArtifactStore(home_b)
    fetched = store.get(result["digest"])
    assert fetched is not None and store.verify(fetched) == []
    assert fetched.primary_path.read_bytes() == data


def test_remote_pull_resumes_and_refuses_a_tampered_download(stack, s3, tmp_path):
    api = stack.server()
    token = api.token("write")
    stack.worker("a")
    home = tmp_path / "client-home"
    code, first, stderr = remote_pull(api, token, home=home)
    assert code == 0, stderr[-3000:]
    path = Path(first["path"])
    data = path.read_bytes()
    assert path.parent == home / "downloads" / first["sha256"] and hashlib.sha256(data).hexdigest() == first["sha256"]

    # an interrupted earlier download: the client asks only for the rest
    out = tmp_path / "out.onnx"
    partial = out.parent / f".{out.name}.zoo-{first['sha256'][:16]}.incomplete"
    half = len(data) // 2
    partial.write_bytes(data[:half])
    with api.client(token) as client:
        before = served_bytes(client)
        code, again, stderr = remote_pull(api, token, "-o", str(out), home=home)
        assert code == 0, stderr[-3000:]
        assert out.read_bytes() == data and not partial.exists()
        assert served_bytes(client) - before == len(data) - half

    # the bucket's copy is damaged (same size, other bytes): the client refuses it and writes nothing
    bucket = stack.base_env["ZOO_S3_BUCKET"]
    bad = bytearray(data)
    bad[len(bad) // 3] ^= 0xFF
    s3.client().put_object(Bucket=bucket, Key=f"blobs/sha256/{first['sha256']}", Body=bytes(bad))
    target = tmp_path / "tampered.onnx"
    code, error, stderr = remote_pull(api, token, "-o", str(target), home=home)
    assert code == 7 and error["error"] == "integrity", (code, error, stderr[-2000:])
    assert not target.exists() and not list(tmp_path.glob(".tampered.onnx*"))

    # HTTP errors map back to zoo's exit codes
    code, error, _ = remote_pull(api, "zoo_000000000000_" + "x" * 43, home=home)
    assert code == 4 and error["error"] == "unauthorized"
    proc = run_zoo("pull", "no_such_model_xyz", "--json",
                   env={"ZOO_SERVER": api.url, "ZOO_TOKEN": token, "ZOO_HOME": str(home)})
    assert proc.returncode == 3 and json.loads(proc.stdout)["error"] == "model_not_found"
    proc = run_zoo("pull", "test_resnet", "--json", env={"ZOO_SERVER": f"http://127.0.0.1:{free_port()}",
                                                         "ZOO_HOME": str(home)})
    assert proc.returncode == 4 and json.loads(proc.stdout)["error"] == "network"


def served_bytes(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('zoo_bytes_served_total{kind="artifact"}'):
            return float(line.split()[-1])
    return 0.0


def test_directory_artifacts_travel_through_the_bucket(stack, s3, tmp_path, monkeypatch):
    """A multi-file artifact uploaded from a worker's store is served by the API from the bucket as one
    tar (ranges too), the remote client unpacks it, and a worker elsewhere fetches it file by file,
    refusing a damaged blob without publishing anything."""
    from builders import directory_artifact

    from zoo import db, errors, remote
    from zoo.settings import Settings
    from zoo.storage import make_storage
    from zoo.storage.artifacts import ArtifactStore
    from zoo.storage.s3 import fetch_artifact

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(stack.node_env("maker"))
    files = {"model.onnx": os.urandom(70_000), "tokenizer.json": b'{"v": 1}', "sub/vocab.txt": b"a\nb\n"}
    art = directory_artifact(settings, files)
    storage = make_storage(settings, db.get_engine(settings.database_url))
    sha, size = storage.index_archive(art.digest)  # what a finishing job does: upload

    api = stack.server()
    tar = httpx.get(f"{api.url}/v1/artifacts/{sha}", timeout=60)
    assert tar.status_code == 200 and hashlib.sha256(tar.content).hexdigest() == sha and len(tar.content) == size
    assert tar.headers["content-type"] == "application/x-tar"
    part = httpx.get(f"{api.url}/v1/artifacts/{sha}", headers={"Range": "bytes=1000-5999"}, timeout=60)
    assert part.status_code == 206 and part.content == tar.content[1000:6000]
    path = remote.fetch_archive(remote.Client(api.url, None), {"sha256": sha, "size": size}, tmp_path / "out", False)
    assert path == tmp_path / "out" / "model.onnx"
    assert all((tmp_path / "out" / name).read_bytes() == data for name, data in files.items())

    elsewhere = ArtifactStore(tmp_path / "elsewhere")
    fetched = fetch_artifact(settings, elsewhere, art.digest)
    assert fetched.digest == art.digest and elsewhere.verify(fetched) == []
    bucket = stack.base_env["ZOO_S3_BUCKET"]
    vocab = next(f for f in art.files if f["path"] == "sub/vocab.txt")
    s3.client().put_object(Bucket=bucket, Key=f"blobs/sha256/{vocab['sha256']}", Body=b"b\na\n")
    damaged = ArtifactStore(tmp_path / "damaged")
    with pytest.raises(errors.IntegrityError):
        fetch_artifact(settings, damaged, art.digest)
    assert damaged.list() == [] and not any((tmp_path / "damaged" / "tmp").iterdir())


def test_an_api_restart_with_queued_jobs_loses_none(stack):
    api = stack.server()
    token = api.token("write")
    with api.client(token) as client:  # no worker runs yet: the jobs wait
        converts = submit(client, opset=16)
        # a repo this worker's (offline) cache lacks: it fails fast, and that it ran at all is the point
        absent = client.post("/v1/jobs", json={"model": "zoo-test/absent-model"}).json()
        jobs = [converts, absent]
        assert [j["state"] for j in jobs] == ["queued", "queued"]
    assert api.stop() == 0
    imported = api.modules()  # the API process of a distributed deployment never imports a framework
    assert {"celery", "boto3"} <= imported and not FRAMEWORKS & imported, FRAMEWORKS & imported
    api.start()
    stack.worker("a", concurrency=2)
    with api.client(token) as client:
        done = [wait_job(client, j["id"], finished, timeout=300) for j in jobs]
    assert [d["state"] for d in done] == ["succeeded", "failed"], done
    assert done[1]["error"]["error"] == "offline_not_cached"
    assert [d["attempts"] for d in done] == [1, 1]  # the duplicate messages sent at restart ran nothing


def test_a_worker_killed_mid_job_loses_nothing_and_publishes_only_whole_artifacts(stack, s3):
    api = stack.server()
    token = api.token("write")
    victim = stack.worker("victim")
    with api.client(token) as client:
        job = submit(client, opset=15)
        wait_job(client, job["id"], lambda j: j["stage"] in ("load", "export") or finished(j), timeout=240)
        (child,) = job_processes(job["id"])
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        deadline = time.monotonic() + 30
        while not pid_gone(child) and time.monotonic() < deadline:  # the job process dies with its worker
            time.sleep(0.1)
        assert pid_gone(child)
        stack.worker("rescuer")
        done = wait_job(client, job["id"], finished, timeout=300)
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        reasons = [e.get("reason") for e in events_of(client, job["id"]) if e.get("state") == "queued"]
        assert any("lease lapsed" in (r or "") for r in reasons), reasons
    victim_home = Path(victim.env["ZOO_HOME"])
    assert not (victim_home / "artifacts").exists() or not any((victim_home / "artifacts").iterdir())
    objects = s3_blobs_are_whole(s3, stack.base_env["ZOO_S3_BUCKET"])
    assert objects[f"blobs/sha256/{done['result']['sha256']}"]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_two_workers_share_one_directory_store_and_a_stopping_worker_hands_its_job_back(stack, tmp_path):
    """Shared-directory mode: the API and two worker processes on one ZOO_HOME, no S3."""
    shared = tmp_path / "shared" / "zoo"
    stack.base_env["ZOO_STORAGE"] = "local"
    api = stack.server(home=shared)
    token = api.token("write")
    one, two = (stack.worker(name, home=shared) for name in ("one", "two"))
    one.wait_ready(), two.wait_ready()
    with api.client(token) as client:
        jobs = [submit(client, opset=opset)["id"] for opset in (16, 17)]
        deadline = time.monotonic() + 120
        while not all(len(job_processes(j)) == 1 for j in jobs):  # prefetch 1: a busy worker takes no second job
            assert time.monotonic() < deadline, [client.get(f"/v1/jobs/{j}").json() for j in jobs]
            time.sleep(0.1)
        runs_on = {parent_of(job_processes(j)[0]): j for j in jobs}
        assert set(runs_on) == {one.proc.pid, two.proc.pid}
        assert one.stop() == 0  # a warm shutdown: its job goes back to the queue without using an attempt
        done = {j: wait_job(client, j, finished, timeout=300) for j in jobs}
        assert all(d["state"] == "succeeded" and d["attempts"] == 1 for d in done.values()), done
        handed_back = runs_on[one.proc.pid]
        reasons = [e.get("reason") for e in events_of(client, handed_back) if e.get("state") == "queued"]
        assert "the worker stopped" in reasons, reasons
        for job in done.values():
            body = client.get(job["result"]["artifact"]["url"]).content
            assert hashlib.sha256(body).hexdigest() == job["result"]["sha256"]
    from zoo.storage.artifacts import ArtifactStore

    store = ArtifactStore(shared)
    assert sorted(a.digest for a in store.list()) == sorted(d["result"]["digest"] for d in done.values())
    assert all(store.verify(a) == [] for a in store.list())
