"""What the HTML pages of ``zoo serve`` share: the Jinja2 environment (autoescaped: every value from a repo
is escaped), the static files (served by content hash, with subresource integrity), the security headers
(a Content-Security-Policy that allows scripts and styles from this origin only: nothing inline), read
access for browsers, and the error page.

Read access: with ``ZOO_READ_AUTH=1`` a page needs a token with the read scope, as the API does, given as
``Authorization: Bearer TOKEN`` or, so that a plain browser can open the pages without JavaScript, as the
password of HTTP Basic authentication (any user name). Basic is accepted by the pages only: the API
takes bearer tokens only, so credentials a browser replays by itself can never start or cancel a job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

import jinja2
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from zoo import __version__, errors
from zoo.service.core import Service
from zoo.service.tokens import verify_token

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml"}


class Asset:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.sha256 = hashlib.sha256(self.body).hexdigest()
        self.integrity = "sha384-" + base64.b64encode(hashlib.sha384(self.body).digest()).decode()
        self.media_type = _MEDIA.get(path.suffix, "application/octet-stream")
        self.url = f"/static/{path.name}?v={self.sha256[:16]}"


ASSETS = {p.name: Asset(p) for p in sorted(STATIC.iterdir()) if p.is_file()}


# --- formatting -------------------------------------------------------------------------------------
def _size(n: Any) -> str:
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _sci(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(number):
        return "n/a"
    return "0" if number == 0 else f"{number:.2e}"


def _pct(value: Any, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:+.2f}%" if signed else f"{float(value) * 100:.1f}%"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60)} s" if s < 3600 else f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def model_url(model_id: str) -> str:
    return "/models/" + quote(model_id, safe="/:@")


def _query(params: dict[str, Any], **change: Any) -> str:
    """A query string: ``params`` with ``change`` applied, empty values (and page 1) left out."""
    pairs = {k: v for k, v in {**params, **change}.items() if v not in (None, "") and not (k == "page" and v == 1)}
    return "?" + urlencode(pairs)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
    env.filters.update(size=_size, sci=_sci, pct=_pct, duration=_duration, when=_when, model_url=model_url)
    env.globals.update(assets=ASSETS, version=__version__, query=_query)
    return env


ENV = _env()


# --- responses --------------------------------------------------------------------------------------
def render(request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    service: Service = request.app.state.service
    body = ENV.get_template(template).render(request=request, read_auth=service.settings.read_auth,
                                             base_url=str(request.base_url).rstrip("/"), **context)
    return HTMLResponse(body, status_code=status,
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", **(headers or {})})


def error_page(request: Request, exc: errors.ZooError) -> HTMLResponse:
    status = errors.http_status_for(exc)
    headers = {"WWW-Authenticate": 'Basic realm="zoo", charset="UTF-8"'} if status == 401 else {}
    return render(request, "error.html", status=status, headers=headers, error=exc.to_dict(), status_code=status)


def static_response(name: str, version: str | None) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise errors.NotFoundError(f"no static file {name!r}", hint="the pages link their files themselves")
    fresh = version == asset.sha256[:16]
    return Response(asset.body, media_type=asset.media_type,
                    headers={**SECURITY_HEADERS, "ETag": f'"{asset.sha256}"',
                             "Cache-Control": "public, max-age=31536000, immutable" if fresh else "no-cache"})


def check_reader(service: Service, authorization: str | None) -> None:
    """Raise UnauthorizedError/ForbiddenError unless reads are open or the request carries a read token."""
    if not service.settings.read_auth:
        return
    scheme, _, value = (authorization or "").partition(" ")
    secret = value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(secret, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        secret = password or user
    elif scheme.lower() != "bearer":
        secret = ""
    if not secret:
        raise errors.UnauthorizedError("these pages need a token with the read scope (ZOO_READ_AUTH is on)",
                                       hint="sign in with any user name and a read token as the password; "
                                            "create one with `zoo token create --scope read`")
    token = verify_token(service.engine, secret)
    if not token.allows("read"):
        raise errors.ForbiddenError(f"token {token.id} has the {token.scope} scope; pages need read",
                                    hint="use a token created with --scope read")


async def answer(request: Request, make: Callable[[], Response]) -> Response:
    """Check read access, then build the page in a thread; zoo's errors become an HTML error page."""
    service: Service = request.app.state.service
    try:
        await run_in_threadpool(check_reader, service, request.headers.get("authorization"))
        return await run_in_threadpool(make)
    except errors.ZooError as exc:
        return error_page(request, exc)


# --- the convert form, from the API's JobOptions schema ----------------------------------------------
def option_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of the JobOptions JSON schema as form inputs: name, kind (integer, number, boolean,
    choice), bounds, default and help."""
    out = []
    for name, prop in schema.get("properties", {}).items():
        variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
        spec = {**prop, **(variants[0] if variants else {})}
        kind = "choice" if "enum" in spec else spec.get("type", "string")
        out.append({"name": name, "kind": kind, "choices": spec.get("enum", []), "default": prop.get("default"),
                    "minimum": spec.get("minimum"), "maximum": spec.get("maximum"),
                    "nullable": len(variants) < len(prop.get("anyOf", [prop])),
                    "help": prop.get("description", ""), "label": name.replace("_", " ")})
    return out


def elapsed(job: Any) -> float | None:
    if job.started_at is None:
        return None
    return (job.finished_at or time.time()) - job.started_at


def snippets(base_url: str, info: dict[str, Any], row: dict[str, Any], read_auth: bool) -> list[tuple[str, str]]:
    """How to get the same artifact elsewhere: the CLI in remote mode, Python and curl (bytes checked against
    their sha256), and, for hub models, a local pull whose source comes through this server's hub mirror."""
    art, fmt, model = row["artifact"], row["format"], info["id"]
    sha = art.get("archive_sha256") or art["sha256"]
    name = f"{model.replace('/', '--')}-{fmt}.tar" if art.get("archive_sha256") else art.get("file") or "model"
    url = f"{base_url}/v1/artifacts/{sha}"
    auth = ' -H "Authorization: Bearer $ZOO_TOKEN"' if read_auth else ""
    py_headers = ', headers={"Authorization": "Bearer " + os.environ["ZOO_TOKEN"]}' if read_auth else ""
    out = [
        ("CLI", f"# a token with the write scope: the server answers from its store\n"
                f"ZOO_SERVER={base_url} ZOO_TOKEN=... zoo pull {model} --format {fmt}"),
        ("Python", "import hashlib, os, urllib.request\n\n"
                   f'request = urllib.request.Request("{url}"{py_headers})\n'
                   "data = urllib.request.urlopen(request).read()\n"
                   f'assert hashlib.sha256(data).hexdigest() == "{sha}"\n'
                   f'open("{name}", "wb").write(data)'),
        ("curl", f"curl -fL{auth} -o {name} {url}\necho '{sha}  {name}' | sha256sum -c -"),
    ]
    if info.get("repo_id"):
        out.append(("HF_ENDPOINT", f"# the source files through this server's hub mirror, converted here\n"
                                   f"HF_ENDPOINT={base_url}{' HF_TOKEN=$ZOO_TOKEN' if read_auth else ''} "
                                   f"zoo pull {model} --format {fmt}"))
    return out
