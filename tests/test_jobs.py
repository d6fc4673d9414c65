"""The job service on real databases: SQLite and PostgreSQL (a fresh schema per test).

Dedupe, idempotency keys, claims with leases and heartbeats, the attempts cap and
cancellation, each raced for real where it matters (threads on one database)."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import SKIP_SERVICES, postgres_schema, require_redis
from serverproc import free_port

from zoo import db, errors
from zoo.service.jobs import JobRequest, JobService

REQUEST = JobRequest(model="test_resnet", format="onnx")


@pytest.fixture
def service(database_url: str) -> JobService:
    return JobService(db.get_engine(database_url), max_attempts=2, lease_s=30)


def test_identical_requests_join_one_job_until_it_finishes(service):
    job, created = service.submit(REQUEST)
    assert created and job.state == "queued" and job.attempts == 0 and len(job.id) == 32
    same, created_again = service.submit(JobRequest(model=" test_resnet ", format="onnx"))
    assert same.id == job.id and not created_again
    other, created_other = service.submit(JobRequest(model="test_resnet", format="onnx", options={"opset": 17}))
    assert created_other and other.id != job.id
    claimed = service.claim("w1")
    assert claimed.id == job.id and claimed.state == "running" and claimed.attempts == 1
    assert service.submit(REQUEST)[0].id == job.id  # still in flight: joined
    assert service.finish(job.id, "w1", "succeeded", result={"sha256": "x"})
    fresh, created_fresh = service.submit(REQUEST)
    assert created_fresh and fresh.id != job.id  # finished jobs are not joined: the cache answers those
    assert service.get(job.id).result == {"sha256": "x"} and service.get(job.id).progress == 1.0


def test_concurrent_identical_submissions_make_exactly_one_job(service):
    barrier = threading.Barrier(16)
    ids: list[str] = []

    def submit() -> None:
        barrier.wait()
        ids.append(service.submit(REQUEST)[0].id)

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs, total = service.list()
    assert len(ids) == 16 and len(set(ids)) == 1 and total == 1 and jobs[0].id == ids[0]


def test_idempotency_key_returns_the_same_job_and_refuses_another_request(service):
    job, _ = service.submit(REQUEST, idempotency_key="k1", token_id="t1")
    assert service.submit(REQUEST, idempotency_key="k1", token_id="t1")[0].id == job.id
    service.claim("w")
    service.finish(job.id, "w", "failed", error={"error": "x"})
    # after the job finished, the key still answers with it (no second job)
    again, created = service.submit(REQUEST, idempotency_key="k1", token_id="t1")
    assert again.id == job.id and again.state == "failed" and not created
    with pytest.raises(errors.IdempotencyKeyReuseError):
        service.submit(JobRequest(model="test_resnet", format="onnx-fp16"), idempotency_key="k1", token_id="t1")
    # keys are scoped per token
    theirs, created = service.submit(REQUEST, idempotency_key="k1", token_id="t2")
    assert created and theirs.id != job.id


def test_a_lapsed_lease_hands_the_job_to_another_worker(database_url):
    service = JobService(db.get_engine(database_url), max_attempts=3, lease_s=0.3)
    job, _ = service.submit(REQUEST)
    assert service.claim("dead").id == job.id
    assert service.claim("other") is None  # leased
    assert service.heartbeat(job.id, "dead") == "ok"
    time.sleep(0.5)  # no heartbeat: the lease lapses
    taken = service.claim("other")
    assert taken.id == job.id and taken.attempts == 2 and taken.lease_owner == "other"
    # the first worker lost it: it can neither beat, report nor finish
    assert service.heartbeat(job.id, "dead") == "lost"
    assert not service.report_stage(job.id, "dead", "export", 0.5)
    assert not service.finish(job.id, "dead", "succeeded", result={})
    assert service.finish(job.id, "other", "succeeded", result={"ok": 1})
    assert service.get(job.id).state == "succeeded"


def test_a_heartbeat_extends_the_lease(database_url):
    """Each beat moves the lease to ``now + lease_s``: a worker that keeps beating keeps its job for as
    long as it runs, however long past the first lease that is (the clock is the service's own)."""
    now = [1000.0]
    service = JobService(db.get_engine(database_url), max_attempts=3, lease_s=10, clock=lambda: now[0])
    job, _ = service.submit(REQUEST)
    assert service.claim("busy").lease_expires == 1010.0
    for t in (1008.0, 1016.0, 1024.0):  # each beat lands before the lease it renews runs out
        now[0] = t
        assert service.heartbeat(job.id, "busy") == "ok"
        assert service.get(job.id).lease_expires == t + 10
        now[0] = t + 7  # well past the first lease (1010): still held
        assert service.claim("other") is None and service.requeue_lapsed() == []
    now[0] = 1024.0 + 10.5  # the beats stop: the lease lapses 10 s after the last one
    taken = service.claim("other")
    assert taken.id == job.id and taken.lease_owner == "other" and taken.attempts == 2


def test_attempts_are_capped(database_url):
    service = JobService(db.get_engine(database_url), max_attempts=2, lease_s=0.2)
    job, _ = service.submit(REQUEST)
    for attempt in (1, 2):
        assert service.claim(f"w{attempt}").attempts == attempt
        time.sleep(0.3)
    assert service.claim("w3") is None
    failed = service.get(job.id)
    assert failed.state == "failed" and failed.error["error"] == "job_crashed" and failed.attempts == 2
    assert service.submit(REQUEST)[1]  # the key is free again


def test_requeue_counts_the_attempt_or_not(service):
    job, _ = service.submit(REQUEST)
    service.claim("w")
    assert service.requeue(job.id, "w", reason="server stopping", count_attempt=False)
    assert service.get(job.id).attempts == 0 and service.get(job.id).state == "queued"
    service.claim("w")
    assert service.requeue(job.id, "w", reason="process killed")
    service.claim("w")
    assert service.get(job.id).attempts == 2
    assert service.requeue(job.id, "w", reason="process killed")  # the cap (2) is reached: fails instead
    assert service.get(job.id).state == "failed" and "process killed" in service.get(job.id).error["message"]


def test_cancel(service):
    queued, _ = service.submit(REQUEST)
    canceled = service.cancel(queued.id)
    assert canceled.state == "canceled" and canceled.finished_at is not None
    assert service.cancel(queued.id).state == "canceled"  # idempotent
    running, _ = service.submit(REQUEST)
    service.claim("w")
    asked = service.cancel(running.id)
    assert asked.state == "running" and asked.cancel_requested
    assert service.heartbeat(running.id, "w") == "cancel"
    assert service.finish(running.id, "w", "canceled")
    done, _ = service.submit(REQUEST)
    service.claim("w")
    service.finish(done.id, "w", "succeeded", result={})
    with pytest.raises(errors.JobStateError) as info:
        service.cancel(done.id)
    assert errors.http_status_for(info.value) == 409
    with pytest.raises(errors.JobNotFoundError):
        service.cancel("0" * 32)
    with pytest.raises(errors.JobNotFoundError):
        service.get("../../etc/passwd")


def test_events_record_each_state_and_stage_in_order(service):
    job, _ = service.submit(REQUEST)
    service.claim("w")
    assert service.report_stage(job.id, "w", "export", 0.5, "torch -> onnx")
    service.note(job.id, "hello")
    service.finish(job.id, "w", "succeeded", result={})
    events = service.events(job.id)
    assert [(e.kind, e.data.get("state") or e.data.get("stage") or e.data.get("message")) for e in events] == [
        ("state", "queued"), ("state", "running"), ("stage", "export"), ("note", "hello"), ("state", "succeeded")]
    assert [e.id for e in service.events(job.id, after=events[2].id)] == [events[3].id, events[4].id]
    assert service.counts()["succeeded"] == 1 and service.counts()["queued"] == 0


class _FinishAfterQuery(JobService):
    """A job service whose job is finished by "another worker" right after the first events query that comes back
    empty: the moment a server-sent-event stream used to miss the final state event."""

    owner: str = "w"
    raced = False

    def events(self, job_id, after=0):
        found = super().events(job_id, after=after)
        if not found and not self.raced:
            self.raced = True
            self.finish(job_id, self.owner, "succeeded", result={})
        return found


def test_the_event_stream_ends_with_the_final_state_even_when_the_job_finishes_mid_poll(database_url):
    import asyncio

    from zoo.api.events import stream_events

    jobs = _FinishAfterQuery(db.get_engine(database_url), max_attempts=2, lease_s=30)
    job, _ = jobs.submit(REQUEST)
    jobs.claim("w")
    service, request = type("S", (), {"jobs": jobs})(), type("R", (), {})()

    async def connected():
        return False

    request.is_disconnected = connected

    async def read(after):
        return [frame async for frame in stream_events(service, request, job.id, after)]

    last = jobs.events(job.id)[-1].id  # the stream resumes after "running": its next query finds nothing new
    frames = b"".join(asyncio.run(read(last))).decode()
    assert jobs.raced
    assert '"state": "succeeded"' in frames.split("event: end")[0], frames  # the state event before the end event


def test_jobs_outlive_the_process_that_queued_them(database_url):
    first = JobService(db.get_engine(database_url))
    job, _ = first.submit(REQUEST)
    db.dispose_engine(database_url)  # as after a restart: a new engine, a new service
    second = JobService(db.get_engine(database_url))
    assert second.get(job.id).state == "queued" and second.claim("w").id == job.id


@pytest.mark.parametrize("request_, error", [
    (JobRequest(model="../etc/passwd"), errors.InvalidNameError),
    (JobRequest(model="test_resnet", format="exe"), errors.UnsupportedFormatError),
    (JobRequest(model="test_resnet", options={"bogus": 1}), errors.UsageError),
    (JobRequest(model="org/name@main", revision="main"), errors.UsageError),
    (JobRequest(model="test_resnet", options={"opset": 3}), errors.UsageError),
])
def test_invalid_requests_are_refused_before_queueing(service, request_, error):
    with pytest.raises(error):
        service.submit(request_)
    assert service.list()[1] == 0


@pytest.mark.parametrize("env, outcome", [
    ({}, pytest.fail.Exception),
    ({"CI": "true"}, pytest.fail.Exception),
    ({SKIP_SERVICES: "1"}, pytest.skip.Exception),  # only when a developer asks for it
    ({SKIP_SERVICES: "1", "CI": "true"}, pytest.fail.Exception),  # and never in CI
], ids=["default", "ci", "skip-asked", "skip-asked-in-ci"])
def test_an_unreachable_service_fails_the_tests_that_need_it(monkeypatch, env, outcome):
    """PostgreSQL or Redis down must not turn into skips that let the suite pass with half the job
    tests and every distributed test unrun."""
    for name in ("CI", SKIP_SERVICES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    closed = free_port()  # nothing listens there
    with pytest.raises(outcome, match="PostgreSQL is not reachable"):
        with postgres_schema(server=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test"):
            pass
    with pytest.raises(outcome, match="Redis is not reachable"):
        require_redis(f"redis://127.0.0.1:{closed}/0")
