"""The job service: conversion requests as rows of the registry database.

The job table is the source of truth, so jobs survive restarts of the server
and of workers. A request is keyed by its canonical form (model, revision,
format, options): while a job for a key is queued or running, the unique
``active_key`` column makes every identical submission join it instead of
starting another conversion. ``Idempotency-Key`` values map to the job they
created or joined.

Workers claim a job with a lease that their heartbeat extends; a worker that
dies stops beating, its lease lapses, and the next claim runs the job again,
up to ``max_attempts``. Every update from a worker names the lease owner, so a
worker that lost its lease can no longer change the job. State changes, stages
and notes are appended to ``job_events``, which the event stream reads.

No framework is imported here: the API process uses this module.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa

from zoo import db, errors
from zoo.options import Options

STATES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "canceled")
_JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class JobRequest:
    """What a client asks for; ``key()`` is its canonical identity."""

    model: str
    format: str = "onnx"
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model.strip()}@{self.revision}" if self.revision else self.model.strip()

    def pull_options(self) -> Options:
        if "format" in self.options:
            raise errors.UsageError("the format is given twice: as format and among the options", hint="give it once")
        return Options.from_mapping(self.options, format=self.format)

    def key(self) -> str:
        """Validate (name, format, options) and return the sha256 of their canonical form."""
        from zoo.converters import graph
        from zoo.hashing import sha256_json
        from zoo.pipeline import converter_versions
        from zoo.registry.names import parse_name

        if self.revision and "@" in self.model:
            raise errors.UsageError("the revision is given twice: in the model name (@...) and as revision",
                                    hint="give it once")
        ref = parse_name(self.name)
        graph.require_format(self.format)
        options = self.pull_options()
        return sha256_json({"name": self.name, "revision": ref.revision, "options": options.job_key_fields(),
                            "versions": converter_versions()})


@dataclass
class Job:
    id: str
    key: str
    model: str
    format: str
    options: dict[str, Any]
    state: str
    stage: str | None
    progress: float
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    created_by: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Job":
        data = dict(row)
        data.pop("active_key", None)
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def request(self) -> JobRequest:
        return JobRequest(model=self.model, format=self.format, options=dict(self.options))


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    at: float
    kind: str  # "state" | "stage" | "note"
    data: dict[str, Any]


class JobService:
    def __init__(self, engine: sa.Engine, *, max_attempts: int = 3, lease_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.lease_s = lease_s
        self.clock = clock

    # --- clients --------------------------------------------------------------
    def submit(self, request: JobRequest, *, idempotency_key: str | None = None, token_id: str | None = None,
               cached: Callable[[], dict[str, Any] | None] | None = None) -> tuple[Job, bool]:
        """The job for ``request``: an earlier one for the same Idempotency-Key, a finished
        one when ``cached()`` has the answer already, the one in flight for the same key,
        or a new queued one. Returns (job, created)."""
        key = request.key()
        scoped = f"{token_id or '-'}:{idempotency_key}" if idempotency_key else None
        if scoped:
            earlier = self._by_idempotency_key(scoped, key)
            if earlier is not None:
                return earlier, False
        answer = cached() if cached is not None else None
        if answer is not None:
            job = self.record_finished(request, answer, token_id=token_id, key=key)
            return (self._remember_idempotency_key(scoped, key, job) if scoped else job), True
        for _ in range(20):  # each lap loses a race to a job that finished or appeared meanwhile
            job = self._active(key)
            created = job is None
            if created:
                job = self._insert(request, key, token_id)
            if job is not None:
                break
        else:  # pragma: no cover - 20 lost races in a row
            raise errors.JobStateError("could not queue the job: the database kept changing under it",
                                       hint="retry the request")
        if scoped:
            job = self._remember_idempotency_key(scoped, key, job)
        return job, created

    def record_finished(self, request: JobRequest, result: dict[str, Any], *, token_id: str | None = None,
                        key: str | None = None) -> Job:
        """A job answered without work (the artifact was already there), for the record."""
        now = self.clock()
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(sa.insert(db.jobs).values(
                id=job_id, key=key or request.key(), active_key=None, model=request.name, format=request.format,
                options=request.options, state="succeeded", stage="cached", progress=1.0, attempts=0,
                max_attempts=self.max_attempts, cancel_requested=False, created_by=token_id, created_at=now,
                updated_at=now, started_at=now, finished_at=now, result=result))
            self._event(conn, job_id, "state", {"state": "succeeded", "cached": True})
        return self.get(job_id)

    def last_succeeded(self, key: str) -> Job | None:
        """The latest job for the request ``key`` that succeeded (a conversion or a cached answer)."""
        j = db.jobs.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.jobs).where((j.key == key) & (j.state == "succeeded"))
                               .order_by(j.finished_at.desc()).limit(1)).mappings().first()
        return Job.from_row(row) if row else None

    def get(self, job_id: str) -> Job:
        row = None
        if _JOB_ID_RE.match(job_id):
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(db.jobs).where(db.jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise errors.JobNotFoundError(f"no job {job_id!r}", hint="list jobs with GET /v1/jobs", job=job_id)
        return Job.from_row(row)

    def list(self, *, state: str | None = None, model: str | None = None, limit: int = 50,
             offset: int = 0) -> tuple[list[Job], int]:
        j = db.jobs.c
        where = sa.true()
        if state:
            where = where & (j.state == state)
        if model:
            where = where & (j.model == model)
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(db.jobs).where(where)).scalar_one()
            rows = conn.execute(sa.select(db.jobs).where(where).order_by(j.created_at.desc(), j.id)
                                .limit(limit).offset(offset)).mappings().all()
        return [Job.from_row(r) for r in rows], total

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask the worker of a running one to stop it."""
        for _ in range(5):
            job = self.get(job_id)
            if job.state == "canceled":
                return job
            if job.finished:
                raise errors.JobStateError(f"job {job_id} already {job.state}; there is nothing to cancel",
                                           hint="submit it again to get a fresh job", job=job_id, state=job.state)
            j = db.jobs.c
            if job.state == "queued" or (job.lease_expires or 0) < self.clock():  # no live worker holds it
                if self._finish_where((j.id == job_id) & (j.state == job.state) & (j.updated_at == job.updated_at),
                                      job_id, "canceled", error=None, result=None):
                    return self.get(job_id)
                continue
            with self.engine.begin() as conn:
                done = conn.execute(sa.update(db.jobs).where((j.id == job_id) & (j.state == "running"))
                                    .values(cancel_requested=True, updated_at=self.clock())).rowcount
                if done:
                    self._event(conn, job_id, "note", {"message": "cancel requested"})
                    break
        return self.get(job_id)

    def events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[Event]:
        e = db.job_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.job_events).where((e.job_id == job_id) & (e.id > after))
                                .order_by(e.id).limit(limit)).mappings().all()
        return [Event(**r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per state (for metrics)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.jobs.c.state, sa.func.count()).group_by(db.jobs.c.state)).all()
        return {state: 0 for state in STATES} | {state: n for state, n in rows}

    # --- workers -------------------------------------------------------------
    def claim(self, owner: str, *, job_id: str | None = None) -> Job | None:
        """Take the oldest queued job (or ``job_id``), or one whose worker's lease lapsed."""
        j = db.jobs.c
        now = self.clock()
        claimable = (j.state == "queued") | ((j.state == "running") & (j.lease_expires < now))
        if job_id is not None:
            claimable = claimable & (j.id == job_id)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(j.id, j.state, j.attempts, j.max_attempts, j.cancel_requested,
                                          j.updated_at).where(claimable).order_by(j.created_at).limit(8)).all()
        for row in rows:
            same = (j.id == row.id) & (j.state == row.state) & (j.updated_at == row.updated_at)
            if self._settle(row, same):
                continue
            with self.engine.begin() as conn:
                taken = conn.execute(sa.update(db.jobs).where(same).values(
                    state="running", attempts=row.attempts + 1, lease_owner=owner, lease_expires=now + self.lease_s,
                    started_at=now, updated_at=now, stage=None, progress=0.0)).rowcount
                if taken:
                    self._event(conn, row.id, "state", {"state": "running", "attempt": row.attempts + 1})
            if taken:
                return self.get(row.id)
        return None

    def requeue_lapsed(self) -> list[str]:
        """Put running jobs whose worker stopped beating back in the queue; their ids.

        For dispatchers whose workers take jobs by id (Celery) rather than from the
        table: the caller enqueues each id again. A conditional update, so of several
        sweepers at once exactly one requeues a job."""
        j = db.jobs.c
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(j.id, j.state, j.attempts, j.max_attempts, j.cancel_requested, j.updated_at)
                                .where((j.state == "running") & (j.lease_expires < now))
                                .order_by(j.created_at).limit(100)).all()
        requeued = []
        for row in rows:
            same = ((j.id == row.id) & (j.state == "running") & (j.updated_at == row.updated_at)
                    & (j.lease_expires < now))
            if self._settle(row, same):
                continue
            with self.engine.begin() as conn:
                done = conn.execute(sa.update(db.jobs).where(same).values(
                    state="queued", lease_owner=None, lease_expires=None, stage=None, progress=0.0,
                    updated_at=now)).rowcount
                if done:
                    self._event(conn, row.id, "state", {"state": "queued",
                                                        "reason": "its worker stopped answering (the lease lapsed)"})
            if done:
                requeued.append(row.id)
        return requeued

    def stranded(self, older_than_s: float) -> list[tuple[str, float]]:
        """Queued jobs untouched for ``older_than_s`` (no claim, no send since): (id, updated_at),
        oldest first. The broker may have lost their message; the caller checks and sends again."""
        j = db.jobs.c
        cutoff = self.clock() - older_than_s
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(j.id, j.updated_at).where((j.state == "queued") & (j.updated_at < cutoff))
                                .order_by(j.created_at).limit(1000)).all()
        return [(row.id, row.updated_at) for row in rows]

    def mark_resent(self, job_id: str, updated_at: float, reason: str) -> bool:
        """Claim the re-sending of a stranded queued job: a conditional update, so of several
        sweepers that find the same job at once exactly one sends it again."""
        j = db.jobs.c
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(db.jobs).where((j.id == job_id) & (j.state == "queued")
                                                         & (j.updated_at == updated_at))
                                .values(updated_at=max(self.clock(), updated_at + 1e-6))).rowcount
            if done:
                self._event(conn, job_id, "note", {"message": reason})
        return bool(done)

    def worker_beat(self, worker_id: str, queue: str) -> None:
        """A broker worker says it is alive (``workers_alive`` counts it)."""
        now = self.clock()
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(db.workers).where(db.workers.c.id == worker_id)
                                .values(seen_at=now)).rowcount
            if not done:
                db.upsert(conn, db.workers, [{"id": worker_id, "queue": queue, "started_at": now, "seen_at": now}])

    def worker_gone(self, worker_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(db.workers).where(db.workers.c.id == worker_id))

    def workers_alive(self, queue: str, within_s: float) -> int:
        """Broker workers of ``queue`` seen in the last ``within_s`` seconds."""
        w = db.workers.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(db.workers).where(
                (w.queue == queue) & (w.seen_at >= self.clock() - within_s))).scalar_one()

    def prune(self, *, jobs_s: float, events_s: float, idempotency_s: float) -> dict[str, Any]:
        """Delete what is older than its retention (0: keep forever): finished jobs with their events,
        events of finished jobs, idempotency keys, and worker rows not seen for a day. Active jobs
        and their events are never touched. Returns the ids of the jobs deleted and row counts."""
        j, e, i, w = db.jobs.c, db.job_events.c, db.idempotency_keys.c, db.workers.c
        now = self.clock()
        out: dict[str, Any] = {"jobs": [], "events": 0, "idempotency_keys": 0, "workers": 0}
        with self.engine.begin() as conn:
            if jobs_s > 0:
                old = conn.execute(sa.select(j.id).where(j.state.in_(TERMINAL) & (j.finished_at < now - jobs_s))
                                   .limit(10_000)).scalars().all()
                for start in range(0, len(old), 500):
                    chunk = old[start:start + 500]
                    out["events"] += conn.execute(sa.delete(db.job_events).where(e.job_id.in_(chunk))).rowcount
                    conn.execute(sa.delete(db.jobs).where(j.id.in_(chunk)))
                out["jobs"] = list(old)
            if events_s > 0:
                finished = sa.select(j.id).where(j.state.in_(TERMINAL))
                out["events"] += conn.execute(sa.delete(db.job_events).where(
                    (e.at < now - events_s) & e.job_id.in_(finished))).rowcount
            if idempotency_s > 0:
                out["idempotency_keys"] = conn.execute(sa.delete(db.idempotency_keys).where(
                    i.created_at < now - idempotency_s)).rowcount
            out["workers"] = conn.execute(sa.delete(db.workers).where(w.seen_at < now - 86400)).rowcount
        return out

    def heartbeat(self, job_id: str, owner: str) -> str:
        """Extend the lease: "ok", "cancel" (a client asked to stop) or "lost" (no longer ours)."""
        j = db.jobs.c
        now = self.clock()
        with self.engine.begin() as conn:
            held = conn.execute(sa.update(db.jobs).where(self._owned(job_id, owner))
                                .values(lease_expires=now + self.lease_s)).rowcount
            cancel = conn.execute(sa.select(j.cancel_requested).where(j.id == job_id)).scalar()
        if not held:
            return "lost"
        return "cancel" if cancel else "ok"

    def report_stage(self, job_id: str, owner: str, stage: str, progress: float, detail: str = "") -> bool:
        now = self.clock()
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(db.jobs).where(self._owned(job_id, owner)).values(
                stage=stage, progress=progress, updated_at=now, lease_expires=now + self.lease_s)).rowcount
            if done:
                self._event(conn, job_id, "stage", {"stage": stage, "progress": progress, "detail": detail})
        return bool(done)

    def note(self, job_id: str, message: str) -> None:
        with self.engine.begin() as conn:
            self._event(conn, job_id, "note", {"message": message})

    def finish(self, job_id: str, owner: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        """End the attempt: succeeded, failed or canceled. False if the lease was lost."""
        if state not in TERMINAL:
            raise ValueError(f"not a final state: {state}")
        return self._finish_where(self._owned(job_id, owner), job_id, state, error=error, result=result)

    def requeue(self, job_id: str, owner: str, *, reason: str, count_attempt: bool = True) -> bool:
        """Give the job back to the queue (its process died, or the server stops)."""
        job = self.get(job_id)
        if count_attempt and job.attempts >= job.max_attempts:
            error = errors.JobCrashedError(f"{reason}, on each of its {job.attempts} attempt(s)",
                                           hint="see the job log under ZOO_HOME/logs/jobs/")
            return self.finish(job_id, owner, "failed", error=error_dict(error))
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(db.jobs).where(self._owned(job_id, owner)).values(
                state="queued", lease_owner=None, lease_expires=None, stage=None, progress=0.0,
                attempts=job.attempts if count_attempt else max(job.attempts - 1, 0),
                updated_at=self.clock())).rowcount
            if done:
                self._event(conn, job_id, "state", {"state": "queued", "reason": reason})
        return bool(done)

    # --- internals -----------------------------------------------------------
    @staticmethod
    def _owned(job_id: str, owner: str) -> Any:
        j = db.jobs.c
        return (j.id == job_id) & (j.lease_owner == owner) & (j.state == "running")

    def _settle(self, row: Any, same: Any) -> bool:
        """End a job no worker may run again: a lapsed one whose cancel was asked, or one out
        of attempts. True when ``row`` needs nothing more."""
        if row.state == "running" and row.cancel_requested:
            self._finish_where(same, row.id, "canceled", error=None, result=None)
            return True
        if row.attempts >= row.max_attempts:
            error = errors.JobCrashedError(
                f"the job's worker died on each of its {row.attempts} attempt(s)",
                hint="see the server log; raise ZOO_JOB_ATTEMPTS or ZOO_JOB_MEMORY_MB if it ran out of memory")
            self._finish_where(same, row.id, "failed", error=error_dict(error), result=None)
            return True
        return False

    def _finish_where(self, where: Any, job_id: str, state: str, *, error: dict[str, Any] | None,
                      result: dict[str, Any] | None) -> bool:
        now = self.clock()
        values: dict[str, Any] = {"state": state, "active_key": None, "lease_owner": None, "lease_expires": None,
                                  "finished_at": now, "updated_at": now, "error": error, "result": result}
        if state == "succeeded":
            values["progress"] = 1.0
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(db.jobs).where(where).values(**values)).rowcount
            if done:
                data = {"state": state} | ({"error": error} if error else {})
                self._event(conn, job_id, "state", data)
        return bool(done)

    def _event(self, conn: sa.Connection, job_id: str, kind: str, data: dict[str, Any]) -> None:
        conn.execute(sa.insert(db.job_events).values(job_id=job_id, at=self.clock(), kind=kind, data=data))

    def _active(self, key: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.jobs).where(db.jobs.c.active_key == key)).mappings().first()
        return Job.from_row(row) if row else None

    def _insert(self, request: JobRequest, key: str, token_id: str | None) -> Job | None:
        now = self.clock()
        job_id = uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(db.jobs).values(
                    id=job_id, key=key, active_key=key, model=request.name, format=request.format,
                    options=request.options, state="queued", stage=None, progress=0.0, attempts=0,
                    max_attempts=self.max_attempts, cancel_requested=False, created_by=token_id,
                    created_at=now, updated_at=now))
                self._event(conn, job_id, "state", {"state": "queued"})
        except sa.exc.IntegrityError:  # an identical job became active meanwhile: join it
            return None
        return self.get(job_id)

    def _by_idempotency_key(self, scoped: str, key: str) -> Job | None:
        i = db.idempotency_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(i.job_id, i.request_key).where(i.key == scoped)).first()
        if row is None:
            return None
        if row.request_key != key:
            raise errors.IdempotencyKeyReuseError(
                "this Idempotency-Key was already used for a different request",
                hint="use a fresh Idempotency-Key for each distinct request")
        return self.get(row.job_id)

    def _remember_idempotency_key(self, scoped: str, key: str, job: Job) -> Job:
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(db.idempotency_keys).values(key=scoped, job_id=job.id, request_key=key,
                                                                   created_at=self.clock()))
        except sa.exc.IntegrityError:  # the same key arrived concurrently: both answer with its job
            earlier = self._by_idempotency_key(scoped, key)
            if earlier is not None:
                return earlier
        return job


def error_dict(exc: BaseException) -> dict[str, Any]:
    """A job's error as stored and served: zoo's error body plus its exit code and HTTP status."""
    body = exc.to_dict() if isinstance(exc, errors.ZooError) else {
        "error": "internal", "message": f"{type(exc).__name__}: {exc}"}
    return {**body, "exit_code": errors.exit_code_for(exc), "status": errors.http_status_for(exc)}
