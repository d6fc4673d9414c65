"""Operations of a long-running deployment: retention of the job records and logs, and the size of a
worker's local copies of artifacts the bucket holds.

- ``prune``: finished jobs (with their events and logs) older than ``ZOO_KEEP_JOBS_DAYS``, events of
  finished jobs older than ``ZOO_KEEP_EVENTS_DAYS``, Idempotency-Key records older than
  ``ZOO_KEEP_IDEMPOTENCY_DAYS`` (0 keeps forever). Active jobs are never touched.
- ``evict_local``: in S3 mode, a worker's store is a cache of the bucket: past ``ZOO_LOCAL_CACHE_MB``, the
  least recently used artifacts whose every blob and manifest the bucket holds are removed (never one
  the bucket lacks, never one used in the last ``min_idle_s``); a later job fetches them back.

``Housekeeper`` runs both every ``every_s`` in a thread of ``zoo serve`` and of ``zoo worker``;
``zoo prune`` runs them once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from zoo.service.jobs import JobService
from zoo.settings import Settings
from zoo.storage.artifacts import ArtifactStore

log = logging.getLogger("zoo.service.ops")
DAY = 86400.0


def prune(settings: Settings, jobs: JobService) -> dict[str, int]:
    """Delete the records and job logs past their retention; the counts deleted."""
    out = jobs.prune(jobs_s=settings.keep_jobs_days * DAY, events_s=settings.keep_events_days * DAY,
                     idempotency_s=settings.keep_idempotency_days * DAY)
    logs = settings.home / "logs" / "jobs"
    removed = 0
    for job_id in out["jobs"]:
        removed += _unlink(logs / f"{job_id}.log")
    if settings.keep_jobs_days > 0 and logs.is_dir():  # logs of jobs another node pruned, or never recorded
        cutoff = time.time() - settings.keep_jobs_days * DAY
        for path in logs.glob("*.log"):
            try:
                old = path.stat().st_mtime < cutoff
            except OSError:
                continue
            if old and not _active(jobs, path.stem):
                removed += _unlink(path)
    return {"jobs": len(out["jobs"]), "events": out["events"], "idempotency_keys": out["idempotency_keys"],
            "workers": out["workers"], "logs": removed}


def _active(jobs: JobService, job_id: str) -> bool:
    from zoo import errors

    try:
        return not jobs.get(job_id).finished
    except errors.JobNotFoundError:
        return False


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except OSError:
        return 0


def note_use(settings: Settings, digest: str) -> None:
    """Record that a job used the local artifact ``digest`` (its place in the LRU order)."""
    path = settings.home / "used" / digest
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass


def last_use(settings: Settings, digest: str, fallback: Path) -> float:
    for path in (settings.home / "used" / digest, fallback):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0


def evict_local(settings: Settings, *, min_idle_s: float = 600.0, bucket: Any = None) -> dict[str, int]:
    """Bring the local store under ``ZOO_LOCAL_CACHE_MB`` by removing the least recently used artifacts
    the bucket holds in full; what was removed (count, bytes) and what remains."""
    out = {"evicted": 0, "evicted_bytes": 0, "kept_bytes": 0}
    if settings.storage != "s3" or settings.local_cache_mb <= 0:
        return out
    from zoo.storage.s3 import Bucket, blob_key, manifest_key

    bucket = bucket or Bucket(settings)
    store = ArtifactStore(settings.home)
    arts = [(last_use(settings, a.digest, a.path), a, sum(max(f["size"], 0) for f in a.files)) for a in store.list()]
    total = sum(size for _, _, size in arts)
    limit = settings.local_cache_mb * 1024 * 1024
    now = time.time()
    for used, art, size in sorted(arts, key=lambda t: t[0]):
        if total <= limit:
            break
        if now - used < min_idle_s:
            continue  # a job may be using it right now
        try:
            held = bucket.size(manifest_key(art.digest)) is not None and all(
                bucket.size(blob_key(f["sha256"])) == f["size"] for f in art.files)
        except Exception as exc:  # noqa: BLE001 - the bucket is unreachable: keep everything
            log.warning("not evicting: the bucket cannot be read (%s)", exc)
            break
        if not held:
            continue  # the only copy: never evicted
        store.remove(art)
        _unlink(settings.home / "used" / art.digest)
        total -= size
        out["evicted"] += 1
        out["evicted_bytes"] += size
        log.info("evicted the local copy of artifact %s (%d bytes; the bucket holds it)", art.digest[:16], size)
    out["kept_bytes"] = total
    return out


class Housekeeper:
    """``prune`` and ``evict_local`` every ``every_s`` in a daemon thread."""

    def __init__(self, settings: Settings, jobs: JobService, every_s: float = 600.0) -> None:
        self.settings, self.jobs, self.every_s = settings, jobs, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, Any]:
        report: dict[str, Any] = {"pruned": prune(self.settings, self.jobs)}
        report["local_cache"] = evict_local(self.settings)
        if any(report["pruned"].values()) or report["local_cache"]["evicted"]:
            log.info("housekeeping: %s", report)
        return report

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="zoo-housekeeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        delay = min(60.0, self.every_s)  # the first pass soon after start, then every every_s
        while not self._stop.wait(delay):
            delay = self.every_s
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the thread
                log.exception("housekeeping failed; retrying later")
