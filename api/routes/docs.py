"""``/docs``: Swagger UI from files zoo serves itself, so the page works on a machine without internet.

FastAPI's own ``/docs`` page loads Swagger UI's script and style from a CDN and stays blank offline; here
they come from the ``fastapi-offline`` package (part of the server extra) under ``/docs/assets/``. Without
it, ``/docs`` is a plain page listing the endpoints from ``/openapi.json``, still with no outside request.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from zoo import errors

router = APIRouter(include_in_schema=False)
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}


def assets_dir() -> Path | None:
    """Where Swagger UI's files are installed, or None."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    if assets_dir() is None:
        return HTMLResponse(_FALLBACK.replace("{openapi}", f"{root}/openapi.json"))
    return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="zoo - API",
                               swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
                               swagger_favicon_url=f"{root}/docs/assets/favicon.png")


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    folder = assets_dir()
    if name not in ASSETS or folder is None:
        raise errors.NotFoundError(f"no such documentation file: {name}", hint="open /docs")
    return FileResponse(folder / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})


_FALLBACK = """<!doctype html><html><head><meta charset="utf-8"><title>zoo - API</title></head>
<body><h1>zoo API</h1><p>The schema: <a href="{openapi}">openapi.json</a>. (Install <code>fastapi-offline</code>
for Swagger UI.)</p><ul id="ops"></ul><script>
fetch("{openapi}").then(r => r.json()).then(spec => {
  const ul = document.getElementById("ops");
  for (const [path, ops] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(ops)) {
    const li = document.createElement("li");
    li.textContent = method.toUpperCase() + " " + path + " - " + (op.summary || "");
    ul.appendChild(li);
  }
});
</script></body></html>"""
