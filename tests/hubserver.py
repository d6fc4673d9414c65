"""A real HTTP server that speaks enough of the Hugging Face Hub protocol for offline tests.

The real ``huggingface_hub`` client (``hf_hub_download``, ``snapshot_download``, ``model_info``,
``list_repo_tree``) and timm/transformers loading through it work against it when ``endpoint=`` or
``HF_ENDPOINT`` points here. It mirrors what huggingface.co answers, header for header where the
client looks: ``X-Repo-Commit``, ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, ``ETag`` (git
blob sha1) for the rest, ``X-Error-Code`` on errors. It never sends ``X-Xet-*`` headers, so the
client always takes the plain HTTP download path. LFS files are served directly (no CDN redirect).

``HubServer.fault`` makes GETs of one file misbehave the ways real networks do: truncate the body,
reset the connection, flip a bit, ignore ``Range``, answer 416, or stall mid-body (see ``Fault``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# --- content addressing, shared with the cache writer in builders.py --------------------------

LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack",
    ".ckpt", ".keras", ".pb", ".tflite", ".gguf", ".npy", ".npz", ".pkl", ".zip", ".gz",
)  # fmt: skip
LFS_SIZE_THRESHOLD = 100 * 1024
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
EMPTY_REGISTRY = {"standardEnvVars": [], "harnesses": {}}  # /api/agent-harnesses
FIXED_DATE = "2024-01-01T00:00:00.000Z"


def is_lfs(path: str, size: int) -> bool:
    """Whether the hub would store this file in LFS (the one rule server and cache writer share)."""
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the hub reports as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file stored in git in place of an LFS file."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        sha256_hex(data).encode(),
        len(data),
    )


def file_etag(path: str, data: bytes) -> str:
    """The etag the client stores the blob under: sha256 for LFS files, git blob sha1 otherwise."""
    return sha256_hex(data) if is_lfs(path, len(data)) else git_blob_sha1(data)


def commit_for(files: dict[str, bytes]) -> str:
    """Deterministic 40-hex commit id over the sorted (path, sha256) pairs."""
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(f"{path}\0{sha256_hex(files[path])}\n".encode())
    return digest.hexdigest()


def is_safe_repo_path(path: str) -> bool:
    """A relative, normalised path with no '..', '.', empty, backslash or NUL parts."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


# --- repositories --------------------------------------------------------------------------


@dataclass
class Repo:
    repo_id: str  # "org/name"
    files: dict[str, bytes]  # path in repo -> content
    gated: bool = False  # downloads need "Authorization: Bearer <server.token>"
    commit: str = ""  # 40-hex; default: commit_for(files)
    info: dict = field(default_factory=dict)  # extra/override fields for /api/models JSON

    def __post_init__(self) -> None:
        if self.repo_id.count("/") != 1 or not is_safe_repo_path(self.repo_id):
            raise ValueError(f"repo_id must be 'org/name', got {self.repo_id!r}")
        bad = [p for p in self.files if not is_safe_repo_path(p)]
        if bad:
            raise ValueError(f"unsafe paths in {self.repo_id}: {bad}")
        self.commit = self.commit or commit_for(self.files)
        if not COMMIT_RE.fullmatch(self.commit):
            raise ValueError(f"commit must be 40 lowercase hex, got {self.commit!r}")


FAULT_KINDS = ("truncate", "reset", "flip", "ignore_range", "416", "stall")


@dataclass
class Fault:
    """A misbehaviour for GETs of one file.

    ``truncate``: send ``after`` body bytes, then close (Content-Length promised more).
    ``reset``: send ``after`` bytes, then reset the connection (TCP RST).
    ``flip``: flip the lowest bit of body byte ``after``; full length, so only a hash notices.
    ``ignore_range``: answer a Range request with 200 and the whole file.
    ``416``: answer a Range request with 416 Range Not Satisfiable.
    ``stall``: send ``after`` bytes, then wait ``seconds`` before the rest.
    ``times``: how many requests it hits (-1: all); Range-only kinds count only Range requests.
    """

    kind: str
    after: int = 0
    times: int = 1
    seconds: float = 0.0

    @property
    def range_only(self) -> bool:
        return self.kind in ("ignore_range", "416")


@dataclass(frozen=True)
class Record:
    """One logged request."""

    method: str
    path: str  # raw (still URL-encoded) path, without query
    query: str
    headers: dict[str, str]
    status: int = 0


class HubError(Exception):
    """An error response the way the hub shapes it."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _not_found_repo(authorized: bool) -> HubError:
    # The hub answers 401 to anonymous callers so as not to reveal whether a private repo exists.
    if authorized:
        return HubError(404, "RepoNotFound", "Repository not found")
    return HubError(401, "RepoNotFound", "Invalid username or password.")


class HubServer:
    """Serve ``Repo`` objects over HTTP on 127.0.0.1 with the hub's URL scheme."""

    def __init__(self, repos: Iterable[Repo] = (), token: str = "hf_test_token"):
        self.token = token
        self.endpoint = ""
        self.requests: list[tuple[str, str]] = []
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._heads: dict[str, str] = {}  # repo_id -> commit of "main"
        self._history: dict[str, dict[str, Repo]] = {}  # repo_id -> commit -> Repo
        self._faults: dict[tuple[str, str], list[Fault]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        for repo in repos:
            self.add(repo)

    # -- public API --

    def add(self, repo: Repo) -> None:
        """Publish ``repo`` as the new head of ``main``; earlier commits stay reachable by sha."""
        with self._lock:
            self._history.setdefault(repo.repo_id, {})[repo.commit] = repo
            self._heads[repo.repo_id] = repo.commit

    def repo(self, repo_id: str, revision: str = "main") -> Repo:
        with self._lock:
            commit = self._heads[repo_id] if revision == "main" else revision
            return self._history[repo_id][commit]

    def interrupt(self, repo_id: str, path: str, after: int) -> None:
        """Make the next GET of this file drop the connection after ``after`` body bytes."""
        self.fault(repo_id, path, "truncate", after=after)

    def fault(self, repo_id: str, path: str, kind: str, *, after: int = 0, times: int = 1, seconds: float = 0.0) -> None:
        """Queue a ``Fault`` for GETs of this file (faults apply in the order queued)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {FAULT_KINDS}")
        with self._lock:
            self._faults.setdefault((repo_id, path), []).append(Fault(kind, after, times, seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def served_bodies(self, path_suffix: str) -> int:
        """How many GETs of a file (any repo) were answered with a body."""
        with self._lock:
            return sum(1 for r in self.records if r.method == "GET" and r.path.endswith("/" + path_suffix)
                       and r.status in (200, 206))

    def clear(self) -> None:
        """Forget the request log."""
        with self._lock:
            self.requests.clear()
            self.records.clear()

    def start(self) -> str:
        if self._httpd is None:
            self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
            self._httpd.daemon_threads = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="hubserver", daemon=True)
            self._thread.start()
            self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self.endpoint

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
            self._thread = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- used by the handler --

    def _log(self, record: Record) -> None:
        with self._lock:
            self.requests.append((record.method, record.path))
            self.records.append(record)

    def _take_fault(self, repo_id: str, path: str, ranged: bool) -> Fault | None:
        with self._lock:
            queue = self._faults.get((repo_id, path), [])
            for fault in queue:
                if fault.range_only and not ranged:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        queue.remove(fault)
                return fault
            return None

    def _lookup(self, repo_id: str, revision: str, auth: str | None, download: bool) -> Repo:
        """The repo at ``revision``, or the HubError the hub would answer."""
        authorized = bool(auth)
        with self._lock:
            history = self._history.get(repo_id)
            head = self._heads.get(repo_id)
        if history is None:
            raise _not_found_repo(authorized)
        if download and history[head].gated:
            self._check_gate(repo_id, auth)
        commit = head if revision == "main" else revision
        if commit not in history:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return history[commit]

    def _check_gate(self, repo_id: str, auth: str | None) -> None:
        if not auth:
            raise HubError(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be"
                " authenticated to access it. Please log in.",
            )
        if auth != f"Bearer {self.token}":
            raise HubError(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list."
                f" Visit {self.endpoint}/{repo_id} to ask for access.",
            )

    def _request_id(self) -> str:
        return f"Root=1-zoo-test-{next(self._ids):08d}"


# --- JSON documents ---------------------------------------------------------------------------


def _lfs_info(data: bytes) -> dict:
    return {"size": len(data), "sha256": sha256_hex(data), "pointerSize": len(lfs_pointer(data))}


def _git_oid(path: str, data: bytes) -> str:
    """The git blob id: of the pointer file for LFS files, of the content otherwise."""
    return git_blob_sha1(lfs_pointer(data)) if is_lfs(path, len(data)) else git_blob_sha1(data)


def _sibling(path: str, data: bytes, blobs: bool) -> dict:
    entry: dict = {"rfilename": path}
    if blobs:
        entry.update(size=len(data), blobId=_git_oid(path, data))
        if is_lfs(path, len(data)):
            entry["lfs"] = _lfs_info(data)
    return entry


def _read_config(repo: Repo) -> dict:
    try:
        return json.loads(repo.files["config.json"])
    except (KeyError, ValueError):
        return {}


def _guess_library(repo: Repo, config: dict) -> tuple[str | None, str | None]:
    """(library_name, pipeline_tag) the hub would show for this repo."""
    if "architecture" in config and "pretrained_cfg" in config:
        return "timm", "image-classification"
    if "model_type" not in config:
        return None, None
    archs = " ".join(config.get("architectures") or [])
    for marker, task in (
        ("ForSequenceClassification", "text-classification"),
        ("ForImageClassification", "image-classification"),
        ("ForMaskedLM", "fill-mask"),
        ("ForCausalLM", "text-generation"),
    ):
        if marker in archs:
            return "transformers", task
    return "transformers", "feature-extraction"


def _safetensors_params(repo: Repo) -> dict | None:
    """The hub's ``safetensors`` summary (parameter count per dtype) from file headers."""
    counts: dict[str, int] = {}
    for path, data in repo.files.items():
        if not path.endswith(".safetensors") or len(data) < 8:
            continue
        try:  # a corrupt or disguised file: the hub shows no summary for it
            header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
            header = {k: v for k, v in header.items() if isinstance(v, dict) and "dtype" in v and isinstance(v.get("shape"), list)}
        except (ValueError, AttributeError):
            continue
        for name, meta in header.items():
            if name != "__metadata__":
                n = 1
                for dim in meta["shape"]:
                    n *= dim
                counts[meta["dtype"]] = counts.get(meta["dtype"], 0) + n
    return {"parameters": counts, "total": sum(counts.values())} if counts else None


def model_info_json(repo: Repo, blobs: bool = False) -> dict:
    """The body of ``GET /api/models/{repo_id}[/revision/{rev}]``."""
    config = _read_config(repo)
    library, pipeline = _guess_library(repo, config)
    weights = ["safetensors"] if any(p.endswith(".safetensors") for p in repo.files) else []
    weights += ["pytorch"] if any(p.endswith((".bin", ".pt", ".pth")) for p in repo.files) else []
    tags = [t for t in (library, *weights, pipeline) if t]
    info = {
        "_id": repo.commit[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": repo.commit,
        "lastModified": FIXED_DATE,
        "createdAt": FIXED_DATE,
        "private": False,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "library_name": library,
        "pipeline_tag": pipeline,
        "config": {k: config[k] for k in ("architectures", "model_type", "architecture") if k in config},
        "siblings": [_sibling(p, repo.files[p], blobs) for p in sorted(repo.files)],
        "safetensors": _safetensors_params(repo),
        "usedStorage": sum(len(d) for d in repo.files.values()),
    }
    info.update(repo.info)
    return {k: v for k, v in info.items() if v is not None}


def _dirs_of(files: Iterable[str]) -> set[str]:
    dirs = set()
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return dirs


def _tree_entry(repo: Repo, path: str) -> dict:
    if path not in repo.files:
        oid = hashlib.sha1(f"tree {repo.commit} {path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}
    data = repo.files[path]
    entry = {"type": "file", "oid": _git_oid(path, data), "size": len(data), "path": path}
    if is_lfs(path, len(data)):
        lfs = _lfs_info(data)
        entry["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
    return entry


def tree_json(repo: Repo, base: str, recursive: bool) -> list[dict]:
    """The body of ``GET /api/models/{repo_id}/tree/{rev}[/{base}]``: directories first, then files."""
    dirs = _dirs_of(repo.files)
    if base and base not in dirs:
        raise HubError(404, "EntryNotFound", f"{base} does not exist on {repo.commit}")
    prefix = f"{base}/" if base else ""
    paths = [p for p in (*dirs, *repo.files) if p.startswith(prefix)]
    if not recursive:
        paths = [p for p in paths if "/" not in p[len(prefix) :]]
    ordered = sorted(p for p in paths if p in dirs) + sorted(p for p in paths if p not in dirs)
    return [_tree_entry(repo, p) for p in ordered]


def refs_json(repo: Repo) -> dict:
    branch = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}
    return {"branches": [branch], "converts": [], "tags": []}


# --- byte ranges ------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """``(start, end_inclusive)``; None to serve the whole file; False if unsatisfiable (416)."""
    match = _RANGE_RE.fullmatch((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None  # absent or malformed (incl. multi-range): RFC 9110 says ignore it
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return False
    return start, end


# --- request handling -------------------------------------------------------------------------


def _split_path(raw_path: str) -> list[str]:
    """Path segments, each URL-decoded; HubError(400) on traversal attempts."""
    segments = [unquote(s) for s in raw_path.split("/")[1:]]
    parts = [part for s in segments for part in s.split("/")]  # "%2F" hides separators inside a segment
    if any(p in (".", "..") or "\\" in p or "\0" in p for p in parts):
        raise HubError(400, None, "Invalid path")
    return segments


class _Server(ThreadingHTTPServer):
    """Closes the connections a ``reset`` fault marked without the usual FIN first."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resets: set[int] = set()

    def shutdown_request(self, request) -> None:
        if id(request) in self.resets:
            self.resets.discard(id(request))
            request.close()
            return
        super().shutdown_request(request)


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        hub = server

    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zoo-test-hub"
    timeout = 30  # idle keep-alive connections go away
    hub: HubServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is HubServer.records

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self.close_connection = True  # the body is never read, so the connection cannot be reused
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self._logged = False
        status = 500
        try:
            status = self._route(method, split.path, parse_qs(split.query))
        except HubError as err:
            status = self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up
        except Exception as exc:  # a bug in this server: answer 500 rather than hang the client
            status = self._send_error(HubError(500, None, f"test hub error: {exc!r}"))
        finally:
            if not self._logged:  # the client hung up before any response was written
                self._log_request(status)

    def _log_request(self, status: int) -> None:
        """Log before the body is written: a client that has its response sees its record."""
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.hub._log(Record(self.command, split.path, split.query, headers, status))
        self._logged = True

    def _route(self, method: str, raw_path: str, query: dict) -> int:
        seg = _split_path(raw_path)
        if method == "POST":
            raise HubError(405, None, "Method not allowed")
        if seg[:1] == ["api"]:
            return self._route_api(seg[1:], query)
        if len(seg) >= 5 and seg[2] == "resolve":
            repo_id, revision, path = f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:])
            return self._resolve(method, repo_id, revision, path)
        raise HubError(404, None, "Not found")

    def _route_api(self, seg: list[str], query: dict) -> int:
        if seg == ["agent-harnesses"]:
            return self._send_json(EMPTY_REGISTRY)
        if len(seg) < 3 or seg[0] != "models":
            raise HubError(404, None, "Not found")
        repo_id, rest = f"{seg[1]}/{seg[2]}", seg[3:]
        auth = self.headers.get("Authorization")
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        if not rest:
            return self._send_json(model_info_json(self.hub._lookup(repo_id, "main", auth, False), blobs))
        if rest[0] == "revision" and len(rest) == 2:
            repo = self.hub._lookup(repo_id, rest[1], auth, False)
            return self._send_json(model_info_json(repo, blobs))
        if rest[0] == "tree" and len(rest) >= 2:
            base = "/".join(rest[2:])
            if base and not is_safe_repo_path(base):
                raise HubError(400, None, "Invalid path")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._send_json(tree_json(self.hub._lookup(repo_id, rest[1], auth, False), base, recursive))
        if rest == ["refs"]:
            return self._send_json(refs_json(self.hub._lookup(repo_id, "main", auth, False)))
        raise HubError(404, None, "Not found")

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> int:
        if not is_safe_repo_path(path):
            raise HubError(400, None, "Invalid path")
        repo = self.hub._lookup(repo_id, revision, self.headers.get("Authorization"), True)
        commit_header = {"X-Repo-Commit": repo.commit}
        if path not in repo.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", commit_header)
        data = repo.files[path]
        headers = {**commit_header, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        etag = file_etag(path, data)
        headers["ETag"] = f'"{etag}"'
        if is_lfs(path, len(data)):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        if method == "HEAD":
            return self._send(200, headers, data)
        ranged = self.headers.get("Range") is not None
        fault = self.hub._take_fault(repo_id, path, ranged)
        span = parse_range(self.headers.get("Range"), len(data))
        if span is False or fault is not None and fault.kind == "416":
            raise HubError(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{len(data)}"})
        status = 200
        if span is not None and not (fault is not None and fault.kind == "ignore_range"):
            status, (start, end) = 206, span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
        if fault is not None and fault.kind == "flip" and fault.after < len(data):
            data = data[: fault.after] + bytes([data[fault.after] ^ 0x01]) + data[fault.after + 1 :]
        return self._send(status, headers, data, fault=fault)

    # -- writing responses --

    def _send_json(self, body) -> int:
        data = json.dumps(body).encode()
        return self._send(200, {"Content-Type": "application/json; charset=utf-8"}, data)

    def _send_error(self, err: HubError) -> int:
        message = " ".join(err.message.split())  # header-safe: no CR/LF
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        return self._send(err.status, headers, json.dumps({"error": err.message}).encode())

    def _send(self, status: int, headers: dict, body: bytes, fault: Fault | None = None) -> int:
        """Write a response (no body to HEAD); a truncate/reset/stall ``fault`` shapes the body."""
        self.send_response(status, HTTPStatus(status).phrase)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.send_header("X-Request-Id", self.hub._request_id())
        self._log_request(status)
        self.end_headers()
        if self.command == "HEAD":
            return status
        kind = fault.kind if fault is not None else None
        if kind not in ("truncate", "reset", "stall"):
            self.wfile.write(body)
            return status
        self.wfile.write(body[: fault.after])
        self.wfile.flush()
        if kind == "stall":
            time.sleep(fault.seconds)
            self.wfile.write(body[fault.after :])
            return status
        if kind == "reset":  # SO_LINGER 0 and no shutdown(): close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.server.resets.add(id(self.connection))
        self.close_connection = True
        return status
