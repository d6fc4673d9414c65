"""The Hugging Face hub's own endpoints, at the server root, for the snapshots zoo
holds: with ``HF_ENDPOINT=http://host:port`` huggingface_hub, timm and
transformers download from zoo (an air-gapped mirror). Errors carry the hub's
``X-Error-Code`` so clients raise their usual exceptions."""

from __future__ import annotations

from typing import Annotated, Callable
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from zoo import errors
from zoo.api.deps import OptionalReader, ServiceDep
from zoo.api.errors import zoo_error_response
from zoo.api.http import IMMUTABLE, REVALIDATE, header_safe, send_blob
from zoo.registry.hf_source import COMMIT_RE
from zoo.service import mirror

router = APIRouter(tags=["hub mirror"])
Part = Annotated[str, Path(max_length=96)]
_HUB_CODES = {errors.ModelNotFoundError: "RepoNotFound", errors.RevisionNotFoundError: "RevisionNotFound"}


async def _answer(make: Callable[[], Response]) -> Response:
    try:
        return await run_in_threadpool(make)
    except errors.NotFoundError as exc:
        headers = {"X-Error-Code": _HUB_CODES.get(type(exc), "EntryNotFound"),
                   "X-Error-Message": header_safe(exc.message)}
        if exc.details.get("commit"):  # clients remember that the file is absent at this commit
            headers["X-Repo-Commit"] = exc.details["commit"]
        return zoo_error_response(exc, headers)


@router.get("/api/models/{org}/{name}", response_model=dict)
async def model_info(org: Part, name: Part, service: ServiceDep, reader: OptionalReader, blobs: bool = False) -> Response:
    """The hub's model info at main."""
    return await model_info_at(org, name, "main", service, reader, blobs)


@router.get("/api/models/{org}/{name}/revision/{revision:path}", response_model=dict)
async def model_info_at(org: Part, name: Part, revision: Annotated[str, Path(max_length=200)], service: ServiceDep,
                        reader: OptionalReader, blobs: bool = False) -> Response:
    """The hub's model info at a revision: commit sha and files."""
    def make() -> Response:
        snap = mirror.held_snapshot(service.settings, service.engine, f"{org}/{name}", revision, reader is not None)
        return JSONResponse(mirror.model_info(snap, mirror.snapshot_files(snap), blobs=blobs))

    return await _answer(make)


@router.get("/api/models/{org}/{name}/tree/{revision}", response_model=list[dict])
async def tree_root(org: Part, name: Part, revision: Annotated[str, Path(max_length=200)], service: ServiceDep,
                    reader: OptionalReader, recursive: Annotated[bool, Query()] = False) -> Response:
    """The hub's file listing at the repo's root."""
    return await tree(org, name, revision, "", service, reader, recursive)


@router.get("/api/models/{org}/{name}/tree/{revision}/{base:path}", response_model=list[dict])
async def tree(org: Part, name: Part, revision: Annotated[str, Path(max_length=200)],
               base: Annotated[str, Path(max_length=1000)], service: ServiceDep, reader: OptionalReader,
               recursive: Annotated[bool, Query()] = False) -> Response:
    """The hub's file listing (snapshot_download reads it)."""
    def make() -> Response:
        snap = mirror.held_snapshot(service.settings, service.engine, f"{org}/{name}", revision, reader is not None)
        return JSONResponse(mirror.tree(snap, mirror.snapshot_files(snap), base.strip("/"), recursive))

    return await _answer(make)


@router.get("/{org}/{name}/resolve/{rest:path}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
@router.head("/{org}/{name}/resolve/{rest:path}", response_class=Response, operation_id="head_resolve")
async def resolve(org: Part, name: Part, rest: str, request: Request, service: ServiceDep, reader: OptionalReader) -> Response:
    """A file at a revision, with the hub's headers (X-Repo-Commit, ETag, X-Linked-Etag/Size) and ranges."""
    # From the raw path: a revision may hold an encoded '/' (refs%2Fpr%2F1) that the decoded path loses.
    segments = [unquote(s) for s in request.scope.get("raw_path", b"").decode("latin-1").split("/")]
    revision, path = (segments[4], "/".join(segments[5:])) if len(segments) > 5 else ("", "")

    def make() -> Response:
        snap = mirror.held_snapshot(service.settings, service.engine, f"{org}/{name}", revision, reader is not None)
        try:
            found = mirror.snapshot_file(snap, path)
        except errors.NotFoundError as exc:
            exc.details["commit"] = snap.commit
            raise
        headers = {"X-Repo-Commit": snap.commit}
        if found.lfs:
            headers.update({"X-Linked-Etag": f'"{found.etag}"', "X-Linked-Size": str(found.size)})
        blob = mirror.file_blob(found)
        counter = service.metrics.bytes_served.labels("mirror")
        policy = IMMUTABLE if COMMIT_RE.match(revision) else REVALIDATE
        return send_blob(request, blob, etag=found.etag, cache_control=policy, headers=headers, on_bytes=counter.inc)

    return await _answer(make)
