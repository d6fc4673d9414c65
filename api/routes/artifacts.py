"""Artifacts by the sha256 of their bytes: a model file, or a directory artifact's tar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from zoo import errors
from zoo.api.deps import ReadAccess, ServiceDep
from zoo.api.http import send_blob
from zoo.api.schemas import ErrorPublic

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="sha256 of the bytes, lowercase hex")]


_RESPONSES = {200: {"content": {"application/octet-stream": {}, "application/x-tar": {}}},
              206: {"description": "the requested byte range"}, 304: {"description": "If-None-Match matched"},
              404: {"model": ErrorPublic}, 416: {"model": ErrorPublic}}


@router.get("/{sha256}", response_class=Response, responses=_RESPONSES)
@router.head("/{sha256}", response_class=Response, responses=_RESPONSES, operation_id="head_artifact")
async def get_artifact(sha256: Sha256, request: Request, service: ServiceDep, _: ReadAccess) -> Response:
    """The bytes whose sha256 is ``sha256`` (the ETag), with ranges and immutable caching."""
    blob = await run_in_threadpool(service.storage.find, sha256)
    if blob is None:
        raise errors.ArtifactNotFoundError(f"no artifact with sha256 {sha256}",
                                           hint="artifact digests are in a finished job's result")
    counter = service.metrics.bytes_served.labels("artifact")
    return send_blob(request, blob, etag=blob.sha256, on_bytes=counter.inc,
                     headers={"Zoo-Verified": "true" if blob.verified else "false"})
