"""Faults of the distributed deployment at scale (issue 12): jobs stranded when the broker loses
its messages, the lease during the S3 upload, a cached answer in S3 mode, and operations
(retention, local-copy eviction, metrics, readiness, a bad database URL).

Real services: the machine's PostgreSQL, a private ``redis-server`` the tests kill and restart
(tests/redisproc.py), moto's S3 server over HTTP, real ``zoo serve`` and ``zoo worker`` processes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import _DELETED_ENV, BROKER_URL, postgres_schema, require_redis
from distproc import WorkerProc, redis_clear
from redisproc import RedisServer
from serverproc import ZooServer, finished, free_port, wait_job


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url():
    with postgres_schema("zoo_i12") as url:
        yield url


def _dispatcher(url: str, queue: str, broker: str = BROKER_URL, **extra: str):
    from zoo import db
    from zoo.service.broker import CeleryDispatcher
    from zoo.service.jobs import JobService
    from zoo.settings import Settings

    settings = Settings.from_env({"ZOO_HOME": os.environ["ZOO_HOME"], "ZOO_DATABASE_URL": url,
                                  "ZOO_DISPATCHER": "celery", "ZOO_BROKER_URL": broker, "ZOO_QUEUE": queue,
                                  "ZOO_JOB_LEASE": "2", "ZOO_JOB_RESEND_S": "0.2", **extra})
    jobs = JobService(db.get_engine(url), lease_s=settings.lease_s)
    return CeleryDispatcher(settings, jobs), jobs


# --- 1. jobs stranded after the broker loses its messages ------------------------------------------------------
def test_the_sweeper_sends_again_queued_jobs_whose_message_is_gone_and_only_those(database_url):
    """The job table is the source of truth: a queued job whose message the broker no longer holds is
    sent again, once across several sweepers; one whose message still waits is left alone."""
    from zoo.service.jobs import JobRequest

    require_redis()
    queue = f"zoo-i12-{uuid.uuid4().hex[:8]}"
    first, jobs = _dispatcher(database_url, queue)
    second, _ = _dispatcher(database_url, queue)
    try:
        ids = [jobs.submit(JobRequest(model=f"zoo-test/absent-{i}"))[0].id for i in range(3)]
        for job_id in ids:
            assert first.enqueue(job_id)
        assert first.messages() == set(ids)
        time.sleep(0.3)
        assert first.sweeper.sweep() == [] and first.sweeper.last_stranded == 0  # every message is there

        redis_clear(f"{queue}:", BROKER_URL)  # the broker lost its queue
        assert first.messages() == set()
        time.sleep(0.3)
        barrier = threading.Barrier(2)
        sent: dict[str, list[str]] = {}

        def sweep(name, dispatcher):
            barrier.wait()
            sent[name] = dispatcher.sweeper.sweep()

        threads = [threading.Thread(target=sweep, args=(n, d)) for n, d in (("a", first), ("b", second))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(sent["a"] + sent["b"]) == sorted(ids)  # each sent again exactly once
        assert first.messages() == set(ids)
        notes = [e.data["message"] for e in jobs.events(ids[0]) if e.kind == "note"]
        assert any("no longer in the broker" in n for n in notes), notes
        time.sleep(0.3)
        assert first.sweeper.sweep() == []  # the messages are back: nothing more to send
        assert all(jobs.get(i).state == "queued" for i in ids)
    finally:
        redis_clear(f"{queue}:", BROKER_URL)


def _stack_env(tmp_path: Path, pg: str, broker: str, queue: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DELETED_ENV}
    env.update(ZOO_DATABASE_URL=pg, ZOO_DISPATCHER="celery", ZOO_BROKER_URL=broker, ZOO_QUEUE=queue,
               ZOO_JOB_LEASE="2", HF_HUB_OFFLINE="1", ZOO_DEBUG="1", HF_HOME=str(tmp_path / "hf"), **extra)
    return env


def test_jobs_stranded_by_a_redis_restart_run_within_a_sweep(tmp_path, pg_url, redis_server):
    """Jobs queued, then Redis restarts (every message lost): they run once a worker is there, without
    restarting `zoo serve`; /readyz says whether the broker and any worker are alive."""
    queue = f"zoo-i12-{uuid.uuid4().hex[:8]}"
    env = _stack_env(tmp_path, pg_url, redis_server.url, queue)
    from zoo import db
    from zoo.registry.index import TIMM_VERSION_KEY
    from zoo.service.tokens import create_token
    from zoo.versions import dist_version

    with db.get_engine(pg_url).begin() as conn:  # no job here names a timm model: skip indexing its catalog
        db.set_meta(conn, TIMM_VERSION_KEY, dist_version("timm") or "")
    api = ZooServer(tmp_path / "api", env, workers=0).start()
    worker = None
    try:
        token, _ = create_token(db.get_engine(pg_url), "write")  # in-process: no CLI start-up
        with api.client(token) as client:
            ready = client.get("/readyz").json()
            assert ready["checks"]["dispatcher"]["workers_alive"] == 0
            assert "no live worker" in ready["checks"]["dispatcher"]["workers"]
            # repos the worker's offline cache lacks: each job fails fast, and that it ran at all is the point
            ids = [client.post("/v1/jobs", json={"model": f"zoo-test/absent-{i}"}).json()["id"] for i in range(3)]
            redis_server.kill()
            down = client.get("/readyz")
            assert down.status_code == 503 and "unreachable" in down.json()["checks"]["dispatcher"]["broker"]
            redis_server.start()
            back = time.monotonic()
            metrics_port = free_port()
            worker = WorkerProc("w", {**env, "ZOO_HOME": str(tmp_path / "w"),
                                      "ZOO_WORKER_METRICS_PORT": str(metrics_port)}, tmp_path, concurrency=3).start()
            done = [wait_job(client, job_id, finished, timeout=90) for job_id in ids]
            took = time.monotonic() - back
            assert [d["state"] for d in done] == ["failed"] * 3, done
            assert all(d["error"]["error"] == "offline_not_cached" and d["attempts"] == 1 for d in done), done
            ready = client.get("/readyz").json()
            assert ready["ready"] and ready["checks"]["dispatcher"]["workers_alive"] == 1, ready
            assert ready["checks"]["dispatcher"]["resent"] >= 1, ready
            # the worker's own metrics count what it ran (the API's cannot: it runs nothing)
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            assert 'zoo_job_attempts_total{outcome="failed"} 3.0' in text, text[-3000:]
            assert 'zoo_job_duration_seconds_count{outcome="failed"} 3.0' in text
            assert 'zoo_jobs{state="failed"} 3.0' in text
        print(f"stranded jobs finished {took:.1f} s after Redis came back (worker start included)")
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)  # idle by now: no warm shutdown to wait for
        api.stop()
        db.dispose_engine(pg_url)


# --- 2. the lease during the S3 upload --------------------------------------------------------------------------
class SlowProxy:
    """A TCP proxy in front of the S3 server that holds every chunk the client sends for ``delay_s``:
    a slow link to the bucket, so an upload takes several leases."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        import socket

        self.target_port, self.delay_s = target_port, delay_s
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import socket

        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, self.delay_s), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, delay_s: float) -> None:
        try:
            while chunk := src.recv(65536):
                time.sleep(delay_s)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _s3_settings(tmp_path: Path, s3, endpoint: str, monkeypatch, **extra: str):
    from distproc import S3_CREDENTIALS

    from zoo.settings import Settings

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"zoo-i12-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    return Settings.from_env({"ZOO_HOME": str(tmp_path / "zoo"), "ZOO_STORAGE": "s3", "ZOO_S3_BUCKET": bucket,
                              "ZOO_S3_ENDPOINT_URL": endpoint, "ZOO_JOB_LEASE": "1", **extra})


def test_the_lease_is_beaten_during_a_slow_upload_and_a_lost_lease_logs_no_success(tmp_path, s3, monkeypatch,
                                                                                    caplog):
    from builders import directory_artifact

    from zoo import db
    from zoo.service.execution import Outcome, record_outcome
    from zoo.service.jobs import JobRequest, JobService
    from zoo.storage import make_storage

    proxy = SlowProxy(s3.port, delay_s=0.25)
    try:
        settings = _s3_settings(tmp_path, s3, proxy.url, monkeypatch)
        engine = db.get_engine(settings.database_url)
        jobs = JobService(engine, lease_s=settings.lease_s)
        storage = make_storage(settings, engine)
        files = {"model.onnx": os.urandom(50_000), "tokenizer.json": b'{"v": 1}', "sub/vocab.txt": b"a\nb\n"}
        art = directory_artifact(settings, files)
        result = {"digest": art.digest, "sha256": art.primary_entry()["sha256"], "cached": False}

        # the upload takes several leases: the lease is beaten, no other worker takes the job meanwhile
        job, _ = jobs.submit(JobRequest(model="zoo-test/dir"))
        job = jobs.claim("uploader", job_id=job.id)
        stolen: list = []
        stop = threading.Event()

        def rival() -> None:  # another worker trying to claim the job all along
            while not stop.wait(0.1):
                if jobs.claim("rival", job_id=job.id) is not None:
                    stolen.append(time.monotonic())
                    return

        thread = threading.Thread(target=rival)
        thread.start()
        started = time.monotonic()
        outcome = Outcome("succeeded", result=dict(result))
        try:
            record_outcome(job, jobs, storage, "uploader", outcome, beat_every=0.2)
        finally:
            stop.set()
            thread.join()
        took = time.monotonic() - started
        assert took > 3 * settings.lease_s, took  # the slow link really made the upload outlast the lease
        assert not stolen and outcome.state == "succeeded"
        done = jobs.get(job.id)
        assert done.state == "succeeded" and done.attempts == 1 and done.result["archive"]["size"] > 0

        # a worker that lost its lease during the upload (another worker took the job over) throws the result
        # away and says so: no success is logged or recorded for it
        second, _ = jobs.submit(JobRequest(model="zoo-test/dir", options={"opset": 17}))
        second = jobs.claim("slow", job_id=second.id)

        def take_over() -> None:
            time.sleep(0.5)
            with engine.begin() as conn:
                conn.execute(db.jobs.update().where(db.jobs.c.id == second.id).values(lease_owner="rescuer"))

        caplog.set_level("INFO", logger="zoo.service.execution")
        thief = threading.Thread(target=take_over)
        thief.start()
        outcome = Outcome("succeeded", result=dict(result))
        record_outcome(second, jobs, storage, "slow", outcome, beat_every=0.2)
        thief.join()
        assert outcome.state == "lost"
        lines = [r.getMessage() for r in caplog.records if second.id in r.getMessage()]
        assert lines and not any("succeeded" in line for line in lines), lines
        assert any("thrown away" in line for line in lines), lines
        assert jobs.get(second.id).state == "running" and jobs.get(second.id).lease_owner == "rescuer"
    finally:
        proxy.close()


# --- 3. a fast cached answer in S3 mode ---------------------------------------------------------------------
REPO = "zoo-test/cached-in-s3"  # nothing converts it here: the first request's worker is played by the test
def test_a_repeat_request_in_s3_mode_is_answered_from_the_index_and_the_bucket(tmp_path, s3, monkeypatch):
    """The API node holds no artifact and no memo: a request a worker already answered is answered at once
    from the job table, the artifact index and the bucket, with no worker running; not when the bucket
    lost a blob or the repo moved to another commit."""
    from builders import write_hf_cache

    from zoo import db
    from zoo.pipeline import index_artifact
    from zoo.registry.index import Registry
    from zoo.service.core import Service
    from zoo.service.execution import public_result
    from zoo.service.jobs import JobRequest
    from zoo.storage import make_storage
    from zoo.storage.artifacts import ArtifactStore

    require_redis()
    queue = f"zoo-i12-{uuid.uuid4().hex[:8]}"
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    common = {"ZOO_DATABASE_URL": database, "ZOO_DISPATCHER": "celery", "ZOO_QUEUE": queue, "HF_HUB_OFFLINE": "1",
              "ZOO_BROKER_URL": BROKER_URL}
    api_settings = _s3_settings(tmp_path / "api", s3, s3.url, monkeypatch, **common,
                                HF_HUB_CACHE=str(tmp_path / "api-hf"))
    bucket = api_settings.s3_bucket
    worker_settings = _s3_settings(tmp_path / "worker", s3, s3.url, monkeypatch, **common,
                                   ZOO_S3_BUCKET=bucket)
    repo_files = {"config.json": b'{"architecture": "resnet18"}', "model.safetensors": os.urandom(1000)}
    commit = write_hf_cache(tmp_path / "api-hf", REPO, repo_files).name
    # what a worker did for the first request: publish the artifact in its own store, index it, upload it
    store = ArtifactStore(worker_settings.home)
    with store.staging() as staged:
        (staged / "model.onnx").write_bytes(os.urandom(40_000))
        manifest = {"model": REPO, "revision": commit, "format": "onnx", "parity": {"passed": True}}
        art = store.publish(staged, "model.onnx", manifest, verified=True)
    index_artifact(Registry(worker_settings), "c" * 64, art, manifest)
    engine = db.get_engine(database)
    worker_storage = make_storage(worker_settings, engine)
    result = public_result({"model": REPO, "revision": commit, "format": "onnx", "digest": art.digest,
                            "sha256": art.primary_entry()["sha256"], "size": art.primary_entry()["size"],
                            "verified": True, "cached": False, "path": "/worker/only"}, worker_storage)
    service = Service(api_settings)
    try:
        request = JobRequest(model=REPO, options={"exporter": "torchscript"})
        first = service.submit(request, idempotency_key=None, token_id=None)
        assert first.state == "queued"  # nothing known yet: a worker must run it
        assert service.jobs.claim("worker", job_id=first.id) is not None
        assert service.jobs.finish(first.id, "worker", "succeeded", result=result)
        assert not (api_settings.home / "artifacts").exists()

        started = time.monotonic()
        again = service.submit(request, idempotency_key=None, token_id=None)
        took = time.monotonic() - started
        assert again.state == "succeeded" and again.stage == "cached", again
        assert again.result["cached"] and again.result["digest"] == art.digest and "path" not in again.result
        assert took < 2.0, took
        hits = [line for line in service.metrics.render().decode().splitlines()
                if line.startswith("zoo_cache_hits_total")]
        assert hits == ["zoo_cache_hits_total 1.0"], hits

        # the bucket lost the blob: no answer from it, the job waits for a worker
        s3.client().delete_object(Bucket=bucket, Key=f"blobs/sha256/{result['sha256']}")
        lost = service.submit(request, idempotency_key=None, token_id=None)
        assert lost.state == "queued"
        service.jobs.cancel(lost.id)
        # restored, but the repo moved on to another commit: a worker decides
        worker_storage.index_archive(art.digest)
        assert service.submit(request, idempotency_key=None, token_id=None).state == "succeeded"
        write_hf_cache(tmp_path / "api-hf", REPO, {**repo_files, "README.md": b"changed"})
        assert service.submit(request, idempotency_key=None, token_id=None).state == "queued"
    finally:
        redis_clear(f"{queue}:", BROKER_URL)
        db.dispose_engine(database)


# --- 4. operations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, needle", [
    ("foo://somewhere/db", "is not a database URL"),
    ("not a url at all", "is not a database URL"),
    ("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/zoo", "leads to no database"),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/zoo_no_such_database_i12", "does not exist"),
])
def test_a_bad_database_url_is_a_configuration_error(url, needle):
    from conftest import run_zoo

    for args in (("token", "list"),) + ((("serve", "--port", "1"),) if "s3cret" in url else ()):
        proc = run_zoo(*args, env={"ZOO_DATABASE_URL": url, "ZOO_DEBUG": "0"}, timeout=120)
        assert proc.returncode == 11, (args, proc.returncode, proc.stderr[-2000:])
        assert needle in proc.stderr and "ZOO_DATABASE_URL" in proc.stderr and "Traceback" not in proc.stderr
        assert "s3cret" not in proc.stderr  # a password in the URL is never echoed


def test_prune_deletes_old_records_and_logs_and_never_active_jobs(database_url, tmp_path):
    from conftest import run_zoo

    from zoo import db
    from zoo.service.jobs import JobRequest, JobService
    from zoo.service.ops import DAY, prune
    from zoo.settings import Settings

    settings = Settings.from_env({"ZOO_HOME": str(tmp_path / "zoo"), "ZOO_DATABASE_URL": database_url})
    now = [time.time() - 40 * DAY]
    jobs = JobService(db.get_engine(database_url), clock=lambda: now[0])
    logs = settings.home / "logs" / "jobs"
    logs.mkdir(parents=True)

    def job(model: str, *, finish: bool, key: str | None = None):
        created, _ = jobs.submit(JobRequest(model=model), idempotency_key=key)
        (logs / f"{created.id}.log").write_text("--- attempt 1\n")
        os.utime(logs / f"{created.id}.log", (now[0], now[0]))
        if finish:
            jobs.claim("w", job_id=created.id)
            jobs.finish(created.id, "w", "failed", error={"error": "x"})
        return created.id

    old = job("zoo-test/old", finish=True, key="k-old")  # 40 days ago
    stuck = job("zoo-test/still-queued", finish=False)  # 40 days old but active: never pruned
    now[0] = time.time() - 10 * DAY
    mid = job("zoo-test/ten-days", finish=True)  # the job stays; its events (10 days old) go
    now[0] = time.time()
    fresh = job("zoo-test/fresh", finish=True, key="k-fresh")
    orphan = logs / f"{'e' * 32}.log"  # the log of a job another node pruned
    orphan.write_text("x")
    os.utime(orphan, (now[0] - 31 * DAY, now[0] - 31 * DAY))

    counts = prune(settings, jobs)
    assert counts["jobs"] == 1 and counts["idempotency_keys"] == 1 and counts["logs"] == 2, counts
    with jobs.engine.connect() as conn:
        ids = set(conn.execute(db.jobs.select().with_only_columns(db.jobs.c.id)).scalars())
        keys = set(conn.execute(db.idempotency_keys.select().with_only_columns(db.idempotency_keys.c.key)).scalars())
    assert ids == {stuck, mid, fresh} and keys == {"-:k-fresh"}
    assert jobs.events(old) == [] and jobs.events(mid) == [] and jobs.events(stuck) and jobs.events(fresh)
    assert sorted(p.stem for p in logs.iterdir()) == sorted([stuck, mid, fresh])

    # the same through the command line, with the retention from the environment
    proc = run_zoo("prune", "--json", env={"ZOO_HOME": str(settings.home), "ZOO_DATABASE_URL": database_url,
                                           "ZOO_KEEP_JOBS_DAYS": "5"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    report = json.loads(proc.stdout)
    assert report["pruned"]["jobs"] == 1 and report["pruned"]["logs"] == 1, report
    assert {j.id for j in jobs.list(limit=10)[0]} == {stuck, fresh}


def test_local_copies_are_evicted_least_recently_used_first_and_only_when_the_bucket_holds_them(
        tmp_path, s3, monkeypatch):
    from zoo import db
    from zoo.service.ops import evict_local, note_use
    from zoo.storage import make_storage
    from zoo.storage.artifacts import ArtifactStore
    from zoo.storage.s3 import fetch_artifact

    settings = _s3_settings(tmp_path, s3, s3.url, monkeypatch, ZOO_LOCAL_CACHE_MB="2")  # 4 x 600 kB: one must go
    storage = make_storage(settings, db.get_engine(settings.database_url))
    store = ArtifactStore(settings.home)
    arts = {}
    for i, name in enumerate(("only-local", "a", "b", "recent")):
        with store.staging() as staged:
            (staged / "model.onnx").write_bytes(os.urandom(600_000))
            arts[name] = store.publish(staged, "model.onnx", {"model": f"zoo-test/{name}", "revision": "r" * 40,
                                                              "format": "onnx"}, verified=True)
        if name != "only-local":  # what a finishing job does: upload
            from zoo.storage.s3 import upload_artifact

            upload_artifact(storage.bucket, storage.local, arts[name], None)
        note_use(settings, arts[name].digest)
        hours_ago = time.time() - {"only-local": 5, "a": 4, "b": 3, "recent": 0}[name] * 3600
        os.utime(settings.home / "used" / arts[name].digest, (hours_ago, hours_ago))

    report = evict_local(settings)
    left = {a.digest for a in store.list()}
    # the least recently used copy the bucket holds went; the older only copy stays
    assert left == {arts["only-local"].digest, arts["b"].digest, arts["recent"].digest}, report
    assert report["evicted"] == 1 and report["evicted_bytes"] == 600_000 and report["kept_bytes"] == 1_800_000
    back = fetch_artifact(settings, store, arts["a"].digest)  # a later job brings it back from the bucket
    assert back.digest == arts["a"].digest and store.verify(back) == []


def test_the_cache_key_holds_only_the_versions_of_the_tools_its_chain_uses(monkeypatch):
    """Workers with other extras, or an unrelated upgrade, share artifacts: torch -> onnx does not key on
    TensorFlow's version, torch -> tflite does."""
    from zoo import pipeline
    from zoo.converters import graph
    from zoo.sources import hub
    from zoo.sources.base import Source

    class TorchRepo(Source):
        node, model_id, revision = "torch", "timm/some-model", "a" * 40

        def tools(self):
            return hub._TORCH_TOOLS

    source = TorchRepo()
    to_onnx, to_tflite = graph.plan("torch", "onnx"), graph.plan("torch", "tflite")
    assert set(pipeline.key_versions(source, to_onnx)) <= {"zoo", "torch", "timm", "transformers", "onnx",
                                                            "onnxscript", "onnxruntime", "numpy"}
    real = pipeline.dist_versions
    before = {name: pipeline.cache_key(source, {"opset": 18}, chain) for name, chain in
              (("onnx", to_onnx), ("tflite", to_tflite))}
    for bumped in ("tensorflow", "tf2onnx", "keras"):  # an unrelated upgrade on this worker
        monkeypatch.setattr(pipeline, "dist_versions",
                            lambda names, b=bumped: {**real(names), **({b: "99.0"} if b in names else {})})
        assert pipeline.cache_key(source, {"opset": 18}, to_onnx) == before["onnx"], bumped
    monkeypatch.setattr(pipeline, "dist_versions", lambda names: {**real(names), "tensorflow": "99.0"}
                        if "tensorflow" in names else real(names))
    assert pipeline.cache_key(source, {"opset": 18}, to_tflite) != before["tflite"]
    monkeypatch.setattr(pipeline, "dist_versions", lambda names: {**real(names), "onnxruntime": "99.0"}
                        if "onnxruntime" in names else real(names))
    assert pipeline.cache_key(source, {"opset": 18}, to_onnx) != before["onnx"]  # a tool it uses: a new key
