"""Liveness, readiness and Prometheus metrics (open: no token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from zoo.api.deps import ServiceDep
from zoo.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(service: ServiceDep) -> JSONResponse:
    """The database answers, the store is writable, the catalog is indexed and the workers run."""
    report = await run_in_threadpool(service.readiness)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(service: ServiceDep) -> Response:
    """Jobs by state, job durations, conversions, cache hits, bytes served."""
    body = await run_in_threadpool(service.metrics.render)
    return Response(body, media_type=service.metrics.content_type)
