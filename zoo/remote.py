"""Remote mode of ``zoo pull``: with ``ZOO_SERVER`` set, the server converts and this process downloads.

    POST /v1/jobs -> follow GET /v1/jobs/{id}/events (SSE) -> GET /v1/artifacts/{sha256}

Progress comes from the job's event stream (stage lines on a terminal, notes
always). The artifact is downloaded into a partial file beside its destination,
resumed with ``Range`` + ``If-Range`` after a dropped connection (or an earlier
interrupted run), checked against the sha256 the job announced, and only then
renamed into place: a wrong or short download never appears under the final
name. Without ``-o`` artifacts land in ``ZOO_HOME/downloads/<sha256>/``. A
directory artifact comes as one tar, checked, then unpacked (plain files only).

Standard library only (``http.client``): the CLI stays light. HTTP errors come
back as zoo's own errors, so the exit codes are the ones a local pull gives.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import ssl
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

from zoo import __version__, errors
from zoo.hashing import sha256_file
from zoo.options import Options
from zoo.pipeline import PullResult
from zoo.progress import Progress
from zoo.settings import Settings

CHUNK = 1024 * 1024
_TRIES = 5
_FILENAME_RE = re.compile(r'filename="([^"/\\]+)"')
# What each exit code means, for errors whose code this version of zoo does not know.
_BY_EXIT = {2: errors.UsageError, 3: errors.NotFoundError, 4: errors.NetworkError, 5: errors.UnsupportedError,
            6: errors.ParityError, 7: errors.InvalidModelError, 8: errors.ConversionError}
_BY_STATUS = {400: errors.UsageError, 401: errors.UnauthorizedError, 403: errors.ForbiddenError,
              404: errors.NotFoundError, 409: errors.JobStateError, 413: errors.PayloadTooLargeError,
              415: errors.UsageError, 422: errors.UsageError, 502: errors.NetworkError, 503: errors.NetworkError,
              504: errors.NetworkError}


class Client:
    """A few HTTP calls to one zoo server, with its token; a fresh connection per call."""

    def __init__(self, server: str, token: str | None, timeout: float = 60.0) -> None:
        url = urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise errors.UsageError(f"ZOO_SERVER={server!r} is not an http(s) URL",
                                    hint="e.g. ZOO_SERVER=http://zoo.internal:8000")
        self.server = server
        self.url = url
        self.prefix = url.path.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, *, body: Any = None,
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        """The response (its body unread); transport failures become NetworkError."""
        conn = self._connection()
        out = {"User-Agent": f"zoo/{__version__}", "Accept": "application/json", **(headers or {})}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            out["Content-Type"] = "application/json"
        try:
            conn.request(method, self.prefix + path, body=data, headers=out)
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise errors.NetworkError(f"cannot reach the zoo server at {self.server}: {exc}",
                                      hint="check ZOO_SERVER, or unset it to pull locally") from exc

    def json(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200,)) -> tuple[int, dict[str, Any]]:
        response = self.request(method, path, body=body, headers=headers)
        with response:
            raw = response.read()
        if response.status not in ok:
            raise error_from_response(response.status, raw, self.server)
        return response.status, json.loads(raw)

    def _connection(self) -> http.client.HTTPConnection:
        if self.url.scheme == "https":
            return http.client.HTTPSConnection(self.url.hostname, self.url.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=self.timeout)


def error_from_response(status: int, raw: bytes, server: str) -> errors.ZooError:
    """zoo's error for an HTTP error answer (its JSON body names the error)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or f"the zoo server at {server} answered HTTP {status}")
    return error_from_body(body, message, status)


def error_from_body(body: dict[str, Any], message: str, status: int | None = None) -> errors.ZooError:
    cls = _class_for_code(str(body.get("error", ""))) or _BY_EXIT.get(body.get("exit_code")) \
        or _BY_STATUS.get(status or body.get("status")) or errors.ZooError
    details = {k: v for k, v in body.items() if k not in ("error", "message", "hint", "exit_code", "status")}
    return cls(message, hint=body.get("hint"), **details)


def transient(exc: errors.ZooError) -> bool:
    """Worth another try: the server was unreachable or answered 502/503/504 (not a refusal, say a 401)."""
    return type(exc) is errors.NetworkError


def _class_for_code(code: str) -> type[errors.ZooError] | None:
    pending = [errors.ZooError]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls is not errors.ZooError:
            return cls
        pending.extend(cls.__subclasses__())
    return None


# --- the pull ---------------------------------------------------------------------------------------------
def pull_remote(name: str, options: Options, settings: Settings, *, progress: Progress,
                output: Path | None = None) -> PullResult:
    """Submit ``name`` to ``ZOO_SERVER``, follow the job, download and verify its artifact."""
    client = Client(settings.server or "", settings.token)
    job = submit(client, name, options)
    if job["state"] not in ("succeeded", "failed", "canceled"):
        job = follow(client, job, progress)
    if job["state"] != "succeeded":
        raise job_error(job)
    result = job["result"]
    blob = result.get("archive") or result["artifact"]
    root = output.expanduser().resolve() if output is not None else settings.home / "downloads" / blob["sha256"]
    with progress.stage("download", f"{blob['size'] / 1e6:.1f} MB from {settings.server}"):
        meter = progress.meter(int(blob["size"]), "download")
        path = fetch_archive(client, blob, root, output is None, meter) if result.get("archive") \
            else fetch_file(client, blob, root, output is None, f"{result['sha256'][:16]}.{result['format']}", meter)
    return PullResult(model=result["model"], revision=result["revision"], format=result["format"], path=str(path),
                      sha256=result["sha256"], size=result["size"], cached=result["cached"],
                      verified=result["verified"], digest=result["digest"], artifact_dir=str(path.parent),
                      parity=result["parity"], conversion=result.get("conversion", {}),
                      notes=list(result.get("notes", [])))


def submit(client: Client, name: str, options: Options) -> dict[str, Any]:
    if options.inputs or options.samples:  # paths on this machine: the server (or its worker) cannot read them
        raise errors.UsageError("--inputs and --samples name files on this machine, which a zoo server cannot read",
                                hint="pull without ZOO_SERVER to use them, or describe the inputs with --input")
    body = {"model": name, "format": options.format,
            "options": options.public()}
    # the same key on every try: a POST retried after a dropped answer joins the job it created
    key = uuid.uuid4().hex
    for attempt in range(_TRIES):
        try:
            return client.json("POST", "/v1/jobs", body=body, headers={"Idempotency-Key": key}, ok=(200, 202))[1]
        except errors.NetworkError as exc:
            if not transient(exc) or attempt == _TRIES - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def follow(client: Client, job: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Relay the job's events until it ends; the finished job. Reconnects after the last event seen."""
    last_id: str | None = None
    failures = 0
    while True:
        try:
            for event_id, kind, data in _events(client, job["id"], last_id):
                last_id = event_id or last_id
                failures = 0
                if kind == "end":
                    return data
                _show(progress, kind, data)
        except errors.NetworkError as exc:
            failures += 1
            if not transient(exc) or failures >= _TRIES:
                raise
        # the stream ended without "end" (a proxy cut it, the server restarted): ask, then listen again
        job = client.json("GET", f"/v1/jobs/{quote(job['id'])}")[1]
        if job["state"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(min(0.5 * 2 ** failures, 5.0))


def _events(client: Client, job_id: str, last_id: str | None) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
    response = client.request("GET", f"/v1/jobs/{quote(job_id)}/events", headers=headers)
    with response:
        if response.status != 200:
            raise error_from_response(response.status, response.read(), client.server)
        fields: dict[str, str] = {}
        try:
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(":")
                    fields[key] = value[1:] if value.startswith(" ") else value
                    continue
                if "event" in fields and "data" in fields:
                    yield fields.get("id"), fields["event"], json.loads(fields["data"])
                fields = {}
        except (OSError, http.client.HTTPException) as exc:
            raise errors.NetworkError(f"the event stream from {client.server} broke: {exc}") from exc


def _show(progress: Progress, kind: str, data: dict[str, Any]) -> None:
    if kind == "note":
        progress.note(str(data.get("message")))
    elif progress.enabled and kind == "stage":
        progress.stream.write(f"zoo: {data.get('stage')} (server)...\n")
        progress.stream.flush()
    elif progress.enabled and kind == "state":
        reason = f": {data['reason']}" if data.get("reason") else ""
        progress.stream.write(f"zoo: job {data.get('state')}{reason}\n")
        progress.stream.flush()


def job_error(job: dict[str, Any]) -> errors.ZooError:
    if job["state"] == "canceled":
        return errors.ZooError(f"job {job['id']} was canceled on the server", hint="pull again to start a new job")
    body = job.get("error") or {}
    return error_from_body(body, str(body.get("message") or f"job {job['id']} failed"))


# --- downloads ----------------------------------------------------------------------------------------------
def fetch_file(client: Client, blob: dict[str, Any], target: Path, into_dir: bool, fallback: str,
               meter: Callable[[int], None] | None = None) -> Path:
    """Download ``blob`` to ``target`` (a file; or a directory to put it in), verified; its path."""
    if into_dir or target.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        name = _filename(client, blob) or fallback
        target = target / name
    if into_dir and target.is_file() and sha256_file(target) == blob["sha256"]:
        return target  # downloaded before, intact
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.zoo-{blob['sha256'][:16]}.incomplete"
    download(client, blob, partial, meter)
    os.replace(partial, target)
    return target


def fetch_archive(client: Client, blob: dict[str, Any], target: Path, into_dir: bool,
                  meter: Callable[[int], None] | None = None) -> Path:
    """Download a directory artifact's tar, verified, and unpack it as ``target``; its primary file."""
    if into_dir and (target / "zoo.json").is_file():
        return target / json.loads((target / "zoo.json").read_text())["primary"]
    if target.exists() and not (target / "zoo.json").is_file():  # replace an earlier artifact, nothing else
        raise errors.UsageError(f"{target} exists and is not a zoo artifact directory; the artifact has several "
                                "files and is written as a directory", hint="give -o a path that does not exist yet")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.zoo-{blob['sha256'][:16]}.tar.incomplete"
    download(client, blob, partial, meter)
    staged = target.parent / f".{target.name}.zoo-{uuid.uuid4().hex[:8]}.unpacking"
    try:
        unpack(partial, staged)
        primary = json.loads((staged / "zoo.json").read_text())["primary"]
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        partial.unlink(missing_ok=True)
    return target / primary


def unpack(tar_path: Path, dest: Path) -> None:
    """Unpack zoo's tar (one top directory of plain files) into ``dest``; anything else is refused."""
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        top = {m.name.split("/", 1)[0] for m in members}
        for member in members:
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if (len(top) != 1 or not member.isfile() or not rel or rel.startswith("/")
                    or any(p in ("", ".", "..") for p in rel.split("/"))):
                raise errors.IntegrityError(f"the archive holds an unexpected entry: {member.name!r}",
                                            hint="the server's artifact is damaged; report it")
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)


def download(client: Client, blob: dict[str, Any], partial: Path, meter: Callable[[int], None] | None = None) -> None:
    """``blob`` into ``partial``, resuming what is there, then checked against its sha256; ``meter`` is
    told the bytes already there and each chunk received (``Progress.meter``: a bar on a terminal)."""
    meter = meter or (lambda n: None)
    counted = 0
    sha, size = blob["sha256"], int(blob["size"])
    path = f"/v1/artifacts/{sha}"
    for attempt in range(_TRIES):
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:
            partial.unlink()
            have = 0
        if have > counted:
            meter(have - counted)  # resumed: what an earlier attempt (or run) already brought
            counted = have
        if have == size:
            break
        try:
            counted += _receive(client, path, sha, partial, have, meter)
        except errors.NetworkError as exc:
            if not transient(exc) or attempt == _TRIES - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)
    got = sha256_file(partial)
    if got != sha or partial.stat().st_size != size:
        partial.unlink()
        raise errors.IntegrityError(f"the download of {sha[:16]} hashes to {got[:16]}, not to the sha256 the "
                                    "server announced; nothing was written",
                                    hint="retry; if it persists the server's copy is damaged: report it")


def _receive(client: Client, path: str, sha: str, partial: Path, have: int,
             meter: Callable[[int], None]) -> int:
    """Bytes from ``have`` on into ``partial``; how many arrived."""
    headers = {"Accept": "*/*", **({"Range": f"bytes={have}-", "If-Range": f'"{sha}"'} if have else {})}
    response = client.request("GET", path, headers=headers)
    with response:
        if response.status == 206 and (response.getheader("Content-Range") or "").startswith(f"bytes {have}-"):
            mode = "ab"
        elif response.status == 200:
            mode = "wb"
            if have:
                meter(-have)  # the server sent the whole file again: the count starts over
        else:
            raise error_from_response(response.status, response.read(), client.server)
        received = 0
        try:
            with open(partial, mode) as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    meter(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise errors.NetworkError(f"the download from {client.server} broke: {exc}") from exc
    return received - (have if mode == "wb" else 0)


def _filename(client: Client, blob: dict[str, Any]) -> str | None:
    response = client.request("HEAD", f"/v1/artifacts/{blob['sha256']}")
    with response:
        response.read()
        if response.status != 200:
            raise error_from_response(response.status, b"", client.server)
        match = _FILENAME_RE.search(response.getheader("Content-Disposition") or "")
    name = match.group(1) if match else None
    return name if name and name not in (".", "..") else None


def pull_anywhere(name: str, options: Options, settings: Settings, *, progress: Progress | None = None,
                  output: Path | None = None) -> PullResult:
    """``name`` converted by ``ZOO_SERVER`` when it is set (remote mode), in this process otherwise: the
    choice ``zoo pull`` makes, for the callers that pull on a user's behalf (``zoo eval``, ``zoo check``,
    ``zoo.testing``)."""
    from zoo.progress import quiet

    progress = progress or quiet()
    if settings.server:
        return pull_remote(name, options, settings, progress=progress, output=output)
    from zoo.pipeline import pull

    return pull(name, options, settings=settings, progress=progress, output=output)
