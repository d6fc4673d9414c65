"""Hub downloads that are verified before use, retried when the network fails.

huggingface_hub (2.x) resumes a body cut short, restarts when a server ignores
``Range``, and checks the size; it does not check content: a bit flipped on the
way lands in the cache under the blob name of the right digest. Every file zoo
downloads is therefore hashed against the hub's own digests (the LFS sha256 of
``model_info``, the blob's etag, or the git blob id for small files) before it
is used; a mismatch evicts the blob and fetches it again. Failures that may
pass (connection resets, truncation, 5xx, 416 on a resume, a corrupt body) are
retried with exponential backoff; the rest (not found, gated, disk full) are not.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.hashing import sha256_file
from zoo.settings import Settings

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_TRANSIENT = {"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
              "ReadError", "WriteError", "RemoteProtocolError", "NetworkError", "ConnectionError",
              "ConnectionResetError", "IncompleteRead"}


@dataclass(frozen=True)
class Expected:
    """What the hub says a file is: LFS sha256 and/or git blob id, and size."""

    sha256: str | None = None
    git_sha1: str | None = None
    size: int | None = None


def expected_digests(info: Any) -> dict[str, Expected]:
    """Per repo file, the digests ``model_info(files_metadata=True)`` announced."""
    out = {}
    for sibling in getattr(info, "siblings", None) or []:
        lfs = getattr(sibling, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        blob = getattr(sibling, "blob_id", None)
        out[sibling.rfilename] = Expected(sha256=sha if sha and _SHA256_RE.match(sha) else None,
                                          git_sha1=None if lfs is not None or not blob else blob,
                                          size=getattr(sibling, "size", None))
    return out


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, expected: Expected | None) -> tuple[str, str | None]:
    """(sha256, problem or None): the content against the hub's digests and the blob's name."""
    digest = sha256_file(path)
    expected = expected or Expected()
    blob = path.resolve().name
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return digest, f"{size} bytes instead of {expected.size}"
    if expected.sha256 and digest != expected.sha256:
        return digest, f"sha256 {digest[:12]}... instead of the hub's {expected.sha256[:12]}..."
    if _SHA256_RE.match(blob) and digest != blob:
        return digest, f"sha256 {digest[:12]}... instead of its etag {blob[:12]}..."
    wanted_sha1 = expected.git_sha1 or (blob if _SHA1_RE.match(blob) else None)
    if wanted_sha1 and not expected.sha256 and git_blob_sha1(path) != wanted_sha1:
        return digest, f"git blob id differs from the hub's {wanted_sha1[:12]}..."
    return digest, None


def evict(path: Path) -> None:
    """Remove a cached file (its blob and its snapshot link) so the next fetch downloads it."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed download may succeed when tried again."""
    if errors.storage_cause(exc):
        return False
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        names = {cls.__name__ for cls in type(cur).__mro__}
        if names & {"RepositoryNotFoundError", "GatedRepoError", "EntryNotFoundError", "RevisionNotFoundError",
                    "DisabledRepoError", "OfflineModeIsEnabled"}:
            return False
        status = getattr(getattr(cur, "response", None), "status_code", None)
        if isinstance(status, int) and (status in (408, 416, 429) or status >= 500):
            return True
        if names & _TRANSIENT or "Consistency check failed" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def download_file(repo_id: str, name: str, commit: str, settings: Settings, expected: Expected | None) -> tuple[Path, str]:
    """Fetch one repo file at ``commit`` into the HF cache, verified; (path, sha256)."""
    from huggingface_hub import hf_hub_download

    attempts = settings.download_retries + 1
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            local = Path(hf_hub_download(repo_id, name, revision=commit, cache_dir=settings.hf_hub_cache,
                                         endpoint=settings.hf_endpoint, token=settings.hf_token))
        except Exception as exc:  # noqa: BLE001 - classified, then translated
            if last or not is_transient(exc):
                err = translate_hub_error(exc, repo_id, commit)
                if attempt and isinstance(err, errors.NetworkError):
                    err.message = f"{err.message} (after {attempt + 1} attempts)"
                    err.args = (err.message,)
                raise err from exc
            _backoff(settings, attempt)
            continue
        digest, problem = check_file(local, expected)
        if problem is None:
            return local, digest
        evict(local)
        if last:
            raise errors.DownloadIntegrityError(
                f"{repo_id}: the hub served {name} with {problem}, {attempts} times; nothing was kept",
                hint="retry later; if it persists the hub or a proxy on the way is serving corrupt data", model=repo_id)
        _backoff(settings, attempt)
    raise AssertionError("unreachable")


def _backoff(settings: Settings, attempt: int) -> None:
    time.sleep(settings.download_backoff_s * (2 ** attempt))


def verify_files(root: Path, names: list[str], expected: dict[str, Expected], refetch: Any = None,
                 label: str = "") -> dict[str, str]:
    """sha256 of each file, checked against ``expected`` (and its blob name).

    A corrupt or missing file is fetched again through ``refetch(name, expected)
    -> (path, sha256)`` when one is given (online hub sources); otherwise it is an
    ``IntegrityError`` that says how to recover."""
    out = {}
    for name in names:
        path = root / name
        digest, problem = check_file(path, expected.get(name)) if path.is_file() else ("", "missing")
        if problem is None:
            out[name] = digest
            continue
        if refetch is None:
            raise errors.IntegrityError(
                f"{label + ': ' if label else ''}{name} is corrupt in the local cache ({problem})",
                hint="unset HF_HUB_OFFLINE so zoo fetches it again, or run `zoo cache verify --repair` while online; "
                     "an imported model must be imported again")
        if path.exists() or path.is_symlink():
            evict(path)
        _path, out[name] = refetch(name, expected.get(name))
    return out


def is_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "TimeoutException", "NetworkError", "RemoteProtocolError", "ConnectionError", "OfflineModeIsEnabled"})


def translate_hub_error(exc: BaseException, repo_id: str, revision: str | None) -> errors.ZooError:
    """Map a huggingface_hub exception to zoo's error with a next step."""
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.GatedRepoError):
        return errors.AuthError(f"{repo_id} is gated: the hub refused access", hint="set HF_TOKEN to a token that has accepted the repo's terms", model=repo_id)
    if isinstance(exc, hf.RepositoryNotFoundError):
        return errors.ModelNotFoundError(f"no model repo {repo_id!r} on {_endpoint_of(exc)}", hint="check the name; private repos need HF_TOKEN", model=repo_id)
    if isinstance(exc, hf.RevisionNotFoundError):
        return errors.RevisionNotFoundError(f"{repo_id} has no revision {revision!r}", hint="use a branch, tag or commit sha that exists", model=repo_id)
    if isinstance(exc, hf.EntryNotFoundError):
        return errors.InvalidModelError(f"{repo_id}: a file it lists could not be fetched ({exc})", model=repo_id)
    if isinstance(exc, hf.HfHubHTTPError):
        return errors.NetworkError(f"the hub answered with an error for {repo_id}: {exc}", hint="retry later, or check HF_ENDPOINT", model=repo_id)
    return errors.NetworkError(f"cannot reach the hub for {repo_id}: {exc}", hint="check your network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the local cache; without hub access, "
                                "`zoo demo` runs the whole pipeline on models built here", model=repo_id)


def _endpoint_of(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    url = getattr(getattr(response, "request", None), "url", None)
    return str(url).split("/api/")[0].split("/", 3)[2] if url else "the hub"
