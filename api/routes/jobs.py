"""Jobs: submit (deduplicated, idempotent), read, list, follow, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from zoo.api.deps import ReadAccess, ServiceDep, WriteAccess
from zoo.api.events import stream_events
from zoo.api.schemas import ErrorPublic, JobCreate, JobPublic, JobsPublic, JobState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_ERRORS = {401: {"model": ErrorPublic}, 403: {"model": ErrorPublic}, 404: {"model": ErrorPublic},
           409: {"model": ErrorPublic}, 413: {"model": ErrorPublic}, 422: {"model": ErrorPublic},
           502: {"model": ErrorPublic}}
JobId = Annotated[str, Path(min_length=1, max_length=64, description="a job id")]


@router.post("", status_code=202, response_model=JobPublic,
             responses={200: {"model": JobPublic, "description": "already converted: a finished job"}, **_ERRORS})
def create_job(body: JobCreate, service: ServiceDep, token: WriteAccess, response: Response,
               idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JobPublic:
    """Queue a conversion. Identical requests in flight share one job; 200 when the artifact exists."""
    job = service.submit(body.to_request(), idempotency_key=idempotency_key, token_id=token.id)
    response.status_code = 200 if job.finished else 202
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobPublic.from_job(job)


@router.get("", response_model=JobsPublic)
def list_jobs(service: ServiceDep, _: ReadAccess, state: JobState | None = None,
              model: Annotated[str | None, Query(max_length=300)] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> JobsPublic:
    """Jobs, newest first."""
    jobs, total = service.jobs.list(state=state, model=model, limit=limit, offset=offset)
    return JobsPublic(data=[JobPublic.from_job(j) for j in jobs], count=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic, responses=_ERRORS)
def get_job(job_id: JobId, service: ServiceDep, _: ReadAccess) -> JobPublic:
    """State, stage, progress, timestamps, error, and the result with the artifact's digest and parity report."""
    return JobPublic.from_job(service.jobs.get(job_id))


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events until the job ends"}, **_ERRORS})
async def job_events(job_id: JobId, request: Request, service: ServiceDep, _: ReadAccess,
                     last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> StreamingResponse:
    """Progress as server-sent events (state, stage, note; ``end`` with the final job). Resumes after Last-Event-ID."""
    await run_in_threadpool(service.jobs.get, job_id)  # 404 before the stream starts
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return StreamingResponse(stream_events(service, request, job_id, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{job_id}/cancel", response_model=JobPublic, status_code=202,
             responses={200: {"model": JobPublic, "description": "canceled"}, **_ERRORS})
def cancel_job(job_id: JobId, service: ServiceDep, _: WriteAccess, response: Response) -> JobPublic:
    """Cancel: a queued job at once (200), a running one by killing its process (202, then canceled)."""
    job = service.jobs.cancel(job_id)
    response.status_code = 200 if job.finished else 202
    return JobPublic.from_job(job)
