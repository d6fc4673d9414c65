"""The service behind ``zoo serve``: one object holding the database, the job
service, artifact storage, the dispatcher and metrics, with the few operations
the HTTP routes need on top of them. It imports no framework: conversions run
in job processes, and timm's catalog is indexed in a child process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.service.dispatch import Dispatcher, make_dispatcher
from zoo.service.execution import child_env, public_result, runner_command
from zoo.service.jobs import Job, JobRequest, JobService
from zoo.service.metrics import Metrics
from zoo.service.ops import Housekeeper
from zoo.settings import Settings
from zoo.storage import make_storage
from zoo.storage.blobs import Storage

log = logging.getLogger("zoo.service.core")


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = replace(settings, index_catalogs=False)
        self.engine = db.get_engine(self.settings.database_url)
        self.jobs = JobService(self.engine, max_attempts=settings.job_attempts, lease_s=settings.lease_s)
        self.storage: Storage = make_storage(self.settings, self.engine)
        self.metrics = Metrics(self.jobs)
        self.dispatcher: Dispatcher = make_dispatcher(self.settings, self.jobs, self.storage, self.metrics.observe)
        self.housekeeper = Housekeeper(self.settings, self.jobs)  # retention of jobs, events, keys and logs
        self.catalog_error: str | None = None
        self._catalog_done = threading.Event()
        self.started = False

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        # timm's catalog is indexed in the background (the first start with a timm version takes ~20 s):
        # the API answers at once, and the requests that need the catalog wait for it (wait_catalog)
        threading.Thread(target=self._index_in_background, name="zoo-catalog", daemon=True).start()
        self.dispatcher.start()
        self.housekeeper.start()
        self.started = True

    def stop(self) -> None:
        self.housekeeper.stop()
        self.dispatcher.stop()
        self.started = False

    def _index_in_background(self) -> None:
        try:
            self.index_catalogs()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz; lookups go on with what is indexed
            self.catalog_error = f"indexing timm's catalog failed: {type(exc).__name__}: {exc}"[:600]
            log.exception("indexing timm's catalog failed")
        finally:
            self._catalog_done.set()

    def wait_catalog(self, timeout: float = 900.0) -> None:
        """Until the catalog indexing begun by ``start`` ends (at once when it has, or was never begun)."""
        if self.started:
            self._catalog_done.wait(timeout)

    def index_catalogs(self) -> None:
        """Bring timm's catalog up to date in a child process (importing timm imports torch)."""
        from zoo.registry.index import TIMM_VERSION_KEY, Registry
        from zoo.versions import dist_version

        Registry(self.settings).ensure_keras_catalog()  # a static table: no framework
        version = dist_version("timm")
        with self.engine.connect() as conn:
            if version is None or db.get_meta(conn, TIMM_VERSION_KEY) == version:
                return
        log.info("indexing timm %s's catalog (once per timm version)", version)
        proc = subprocess.run(runner_command("--index-catalogs", "--parent", str(os.getpid())),
                              env=child_env(self.settings), capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            self.catalog_error = f"indexing timm's catalog failed: {proc.stderr.strip()[-500:]}"
            log.error(self.catalog_error)

    def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except sa.exc.SQLAlchemyError as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        home = self.settings.home
        checks["store"] = "ok" if home.is_dir() and os.access(home, os.W_OK) else f"{home} is not writable"
        checks["catalog"] = self.catalog_error or "ok"
        if self.started and not self._catalog_done.is_set():
            checks["catalog_indexing"] = "timm's catalog is being indexed; requests that need it wait for it"
        checks["dispatcher"] = self.dispatcher.status()
        settled = all(v == "ok" for k, v in checks.items() if k not in ("dispatcher", "catalog_indexing"))
        ready = self.started and settled and checks["dispatcher"]["ready"]
        return {"ready": ready, "checks": checks}

    # --- jobs ----------------------------------------------------------------
    def submit(self, request: JobRequest, *, idempotency_key: str | None, token_id: str | None) -> Job:
        request.key()  # validate before looking anything up
        self.wait_catalog()
        self._check_known(request)

        def cached() -> dict[str, Any] | None:
            from zoo.pipeline import recall

            found = recall(request.name, request.pull_options(), self.settings)
            answer = public_result(found.to_json(), self.storage) if found is not None else self._from_index(request)
            if answer is not None:
                self.metrics.cache_hits.inc()
            return answer

        job, created = self.jobs.submit(request, idempotency_key=idempotency_key, token_id=token_id, cached=cached)
        if not job.finished:
            self.dispatcher.submitted(job)
        return job

    def _from_index(self, request: JobRequest) -> dict[str, Any] | None:
        """In S3 mode the API node holds no artifact and no memo: answer a repeat request from the job
        table, the artifact index and the bucket, when an identical request succeeded with a verified
        artifact, its repo still points at the same commit, and the bucket holds every blob it names."""
        if self.settings.storage != "s3":
            return None
        from zoo.pullmemo import current_commit
        from zoo.registry.names import parse_name

        earlier = self.jobs.last_succeeded(request.key())
        result = dict(earlier.result or {}) if earlier is not None else {}
        repo = result.get("model")
        if not (result.get("verified") and result.get("digest") and result.get("sha256")) or not isinstance(repo, str) \
                or repo.count("/") != 1 or repo.startswith(("local/", "keras/")):
            return None
        if current_commit(repo, parse_name(request.name).revision, self.settings) != result.get("revision"):
            return None  # a new commit, or no way to tell: a worker decides
        with self.engine.connect() as conn:
            indexed = conn.execute(sa.select(db.artifacts.c.digest).where(
                (db.artifacts.c.digest == result["digest"]) & db.artifacts.c.verified).limit(1)).first()
        shas = [result["sha256"]] + ([result["archive"]["sha256"]] if result.get("archive") else [])
        try:
            if indexed is None or any(self.storage.find(sha) is None for sha in shas):
                return None
        except errors.ZooError as exc:  # the bucket is unreachable or holds a damaged copy: a worker decides
            log.warning("no cached answer from the bucket for %s: %s", request.name, exc)
            return None
        return {**result, "cached": True}

    def _check_known(self, request: JobRequest) -> None:
        """Unknown names of the index (timm, keras, local) fail now, with candidates; repo ids
        cannot be checked without asking the hub, so their job finds out."""
        from zoo.registry.index import Registry
        from zoo.registry.names import parse_name

        ref = parse_name(request.name)
        if not ref.is_repo:
            Registry(self.settings).resolve(ref)

    # --- catalog -------------------------------------------------------------
    def models(self, pattern: str | None, source: str | None, limit: int, offset: int) -> tuple[list[Any], int]:
        from zoo.registry.index import Registry

        self.wait_catalog()
        registry = Registry(self.settings)
        return registry.search(pattern, source=source, limit=limit, offset=offset), registry.count(pattern, source=source)

    def model(self, model_id: str) -> dict[str, Any]:
        """The record, its revisions and files, and its artifacts with their parity reports."""
        from zoo.catalog import model_info

        self.wait_catalog()
        info = model_info(model_id, self.settings)
        digests = [a["digest"] for a in info["artifacts"]]
        with self.engine.connect() as conn:
            archives = dict(conn.execute(sa.select(db.archives.c.digest, db.archives.c.sha256)
                                         .where(db.archives.c.digest.in_(digests))).all()) if digests else {}
        for art in info["artifacts"]:
            art.pop("path", None)
            art["archive_sha256"] = archives.get(art["digest"])
        info["formats"] = sorted({a["format"] for a in info["artifacts"] if a["verified"]})
        return info
