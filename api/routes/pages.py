"""The web catalog: HTML pages over the same service the JSON API serves (catalog, model, convert, jobs).

Read-only pages are whole without JavaScript; zoo.js adds search as you type, live job updates and the
convert flow (which sends the tab's token as a Bearer header to /v1/jobs). Not in the OpenAPI schema:
they are for people; programs use /v1.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from zoo import catalog, errors
from zoo.api import web
from zoo.api.card import render_card
from zoo.api.charts import formats_chart, parity_chart
from zoo.api.http import send_blob
from zoo.api.schemas import JobOptions, JobPublic
from zoo.service.core import Service

router = APIRouter(include_in_schema=False)
PER_PAGE = 25
Text = Annotated[str | None, Query(max_length=200)]
PageNo = Annotated[int, Query(ge=1, le=100_000)]


def _service(request: Request) -> Service:
    return request.app.state.service


@router.get("/")
async def catalog_page(request: Request, q: Text = None, source: Text = None, task: Text = None,
                       format: Text = None, page: PageNo = 1, fragment: bool = False) -> Response:
    """Search the whole index; filters by source, task and verified format; paginated."""
    def make() -> Response:
        settings = _service(request).settings
        _service(request).wait_catalog()  # a first start indexes timm's catalog in the background
        rows, total = catalog.search_models(settings, q, source=source, task=task, fmt=format,
                                            limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        params = {"q": q, "source": source, "task": task, "format": format}
        context = {"rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PER_PAGE)),
                   "params": params, "per_page": PER_PAGE}
        if fragment:
            return web.render(request, "_results.html", **context)
        return web.render(request, "catalog.html", facets=catalog.catalog_facets(settings), **context)

    return await web.answer(request, make)


@router.get("/models/{model_id:path}")
async def model_page(request: Request, model_id: Annotated[str, Path(max_length=300)]) -> Response:
    """Card, record, revisions with safety verdicts, the format matrix, downloads, snippets, pictures."""
    def make() -> Response:
        service = _service(request)
        info = service.model(model_id)
        matrix = catalog.format_matrix(info, service.settings)
        card = catalog.model_card(info, service.settings)
        card_html = None
        if card is not None:
            files_url = f"/{info['repo_id']}/resolve/{card['revision']}" if info.get("repo_id") else None
            card_html = render_card(card["text"], files_url=files_url)
        reports = [(row["format"], parity_chart(row["artifact"]["parity"])) for row in matrix if row["artifact"]]
        return web.render(request, "model.html", info=info, matrix=matrix, card=card, card_html=card_html,
                          verdicts=catalog.file_verdicts(info, service.settings), reports=reports,
                          formats_chart=formats_chart(matrix), snippets=web.snippets)

    return await web.answer(request, make)


@router.get("/convert")
async def convert_page(request: Request, model: Text = None, format: Text = None) -> Response:
    """Pick formats and options (the form is made from JobOptions' schema), start jobs, follow them live."""
    def make() -> Response:
        service = _service(request)
        formats, info = _formats_for(service, model)
        return web.render(request, "convert.html", model=model or "", info=info, formats=formats,
                          chosen=format or "onnx", fields=web.option_fields(JobOptions.model_json_schema()))

    return await web.answer(request, make)


def _formats_for(service: Service, model: str | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if model:
        info = service.model(model)
        return [{"format": r["format"], "state": r["state"]} for r in catalog.format_matrix(info, service.settings)], info
    from zoo.converters.graph import SOURCE_ONLY, formats

    return [{"format": f, "state": ""} for f in formats() if f not in SOURCE_ONLY], None


@router.get("/jobs")
async def jobs_page(request: Request, state: Text = None, page: PageNo = 1, fragment: bool = False) -> Response:
    """Recent jobs: state, stage, duration, error, links; zoo.js refreshes the rows while any is active."""
    def make() -> Response:
        service = _service(request)
        wanted = state if state in ("queued", "running", "succeeded", "failed", "canceled") else None
        jobs, total = service.jobs.list(state=wanted, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        context = {"jobs": [(JobPublic.from_job(j), web.elapsed(j)) for j in jobs], "total": total, "page": page,
                   "pages": max(1, -(-total // PER_PAGE)), "state": wanted, "now": time.time()}
        return web.render(request, "_jobs.html" if fragment else "jobs.html", **context)

    return await web.answer(request, make)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: Annotated[str, Path(max_length=64)], fragment: bool = False) -> Response:
    """One job: its events, its result (download, parity picture) or its error."""
    def make() -> Response:
        service = _service(request)
        job = service.jobs.get(job_id)
        public = JobPublic.from_job(job)
        parity = (job.result or {}).get("parity") or (job.error or {}).get("report") or {}
        return web.render(request, "_job.html" if fragment else "job.html", job=public, elapsed=web.elapsed(job),
                          events=service.jobs.events(job_id), chart=parity_chart(parity))

    return await web.answer(request, make)


@router.get("/download/{sha256}")
async def download(request: Request, sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]) -> Response:
    """An artifact by its sha256, as /v1/artifacts serves it, behind the pages' read access: with
    ZOO_READ_AUTH a browser signed in with Basic downloads what the API would want a Bearer token for."""
    def make() -> Response:
        service = _service(request)
        blob = service.storage.find(sha256)
        if blob is None:
            raise errors.ArtifactNotFoundError(f"no artifact with sha256 {sha256}",
                                               hint="the model pages list what can be downloaded")
        return send_blob(request, blob, etag=blob.sha256, on_bytes=service.metrics.bytes_served.labels("artifact").inc,
                         headers={"Zoo-Verified": "true" if blob.verified else "false"})

    return await web.answer(request, make)


@router.get("/static/{name}")
async def static(name: Annotated[str, Path(max_length=64)], v: Text = None) -> Response:
    """zoo.js and zoo.css, by content hash (immutable when the hash is given)."""
    return web.static_response(name, v)
