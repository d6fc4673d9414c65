"""One JSON error shape for every failure: ``{"error", "message", "hint", "status", ...}``.

zoo's own errors take their status from ``zoo.errors.HTTP_STATUSES``; request
validation, routing and unexpected failures are put in the same shape here.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zoo import errors

log = logging.getLogger("zoo.api")

# Error codes for statuses Starlette raises itself (unknown route, wrong method).
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
               415: "unsupported_media_type"}


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="zoo"')
    return JSONResponse({**body, "status": status}, status_code=status, headers=headers)


def zoo_error_response(exc: errors.ZooError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {k: v for k, v in exc.to_dict().items() if _jsonable(v)}
    return error_response(errors.http_status_for(exc), body, headers)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict, type(None)))


async def _on_zoo_error(request: Request, exc: errors.ZooError) -> JSONResponse:
    return zoo_error_response(exc)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
                for e in exc.errors()]
    if any(p["type"] == "json_invalid" for p in problems):
        return error_response(400, {"error": "malformed_json", "message": "the request body is not valid JSON",
                                    "hint": "send a JSON object with Content-Type: application/json",
                                    "errors": problems})
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if any(p["loc"][:1] == ["body"] for p in problems) and content_type and not content_type.endswith("json"):
        return error_response(415, {"error": "unsupported_media_type",
                                    "message": f"the request body is {content_type}, not JSON",
                                    "hint": "send a JSON object with Content-Type: application/json"})
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p != "body") or "request"
    return error_response(422, {"error": "invalid_request", "message": f"{where}: {first['msg']}",
                                "hint": "see the API schema at /openapi.json", "errors": problems})


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    return error_response(exc.status_code, {"error": code, "message": message}, getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, {"error": "internal", "message": f"internal error: {type(exc).__name__}",
                                "hint": "see the server log; this is a bug in zoo"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ZooError, _on_zoo_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
