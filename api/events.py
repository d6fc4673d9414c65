"""Server-sent events of one job, read from the job_events table (so they work
whichever process runs the job): ``state``, ``stage`` and ``note`` events with
their table id as the event id, then ``end`` carrying the finished job."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from zoo.api.schemas import JobPublic
from zoo.service.core import Service

POLL_S = 0.25
KEEPALIVE_S = 15.0


def _frame(kind: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def stream_events(service: Service, request: Request, job_id: str, after: int) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        # The job before its events: a job finishes in the same transaction as its last state event, so a job
        # read as finished here has every event visible to the query below. (Read the other way round, a job
        # finishing between the two reads ended the stream without its final state event.)
        job = await run_in_threadpool(service.jobs.get, job_id)
        events = await run_in_threadpool(service.jobs.events, job_id, after=after)
        for event in events:
            after = event.id
            yield _frame(event.kind, {"job": job_id, "at": event.at, **event.data}, event.id)
        if job.finished and not events:
            yield _frame("end", JobPublic.from_job(job).model_dump(mode="json"))
            return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(POLL_S)
