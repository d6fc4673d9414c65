"""The FastAPI application: wires the routers, the error handlers, the body
limit and the service's lifecycle. Nothing else lives here."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from zoo import __version__
from zoo.api.errors import install_error_handlers
from zoo.api.http import BodyLimit
from zoo.api.routes import artifacts, docs, health, jobs, mirror, models, pages, tokens
from zoo.service.core import Service
from zoo.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    service = Service(settings or get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="zoo", version=__version__, lifespan=lifespan, docs_url=None,  # /docs: routes/docs.py
                  description="Pull models by name, convert them, check parity, download verified artifacts.")
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_body_bytes)
    for router in (health.router, docs.router, models.router, jobs.router, artifacts.router, tokens.router,
                   mirror.router):
        app.include_router(router)
    app.include_router(pages.router)  # the web catalog at /: last, so /v1 and the hub mirror's paths come first
    return app
