"""The hub mirror: the Hugging Face cache snapshots zoo holds, described the way
the hub describes them, so that huggingface_hub, timm and transformers clients
with ``HF_ENDPOINT`` pointing at ``zoo serve`` download from it.

zoo holds a snapshot when it fetched that commit itself (a row in the registry's
``revisions`` table) and the files are in its Hugging Face cache. Blobs in the
cache are named by the etag the hub gave them (sha256 for LFS files, the git
blob id otherwise); the mirror hands the same etags back, so a client's cache
ends up identical to one filled from the hub.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.hashing import sha256_file
from zoo.registry.hf_source import COMMIT_RE, cached_commit, repo_cache_dir, repo_restricted
from zoo.settings import Settings
from zoo.storage.blobs import Blob, FilePart

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIXED_DATE = "1970-01-01T00:00:00.000Z"  # the cache does not keep the commit's date


class EntryNotFoundError(errors.NotFoundError):
    code = "entry_not_found"


@dataclass(frozen=True)
class Snapshot:
    repo_id: str
    commit: str
    root: Path  # snapshots/<commit>
    blobs: Path  # where its files may point


@dataclass(frozen=True)
class MirrorFile:
    path: str  # inside the repo
    real: Path  # the blob on disk
    size: int
    etag: str  # as the hub reports it

    @property
    def lfs(self) -> bool:
        return bool(_HEX64.match(self.etag))

    @property
    def sha256(self) -> str | None:
        return self.etag if self.lfs else None

    def pointer(self) -> bytes:
        return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (self.etag.encode(), self.size)

    @property
    def git_oid(self) -> str:
        data = self.pointer() if self.lfs else None
        if data is None:
            return self.etag
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def may_read(settings: Settings, repo_id: str, authenticated: bool) -> bool:
    """Public repos are served to anyone; a repo the hub restricts (private or gated, fetched with the
    server's token) only to callers with a zoo token of the read scope. A repo whose access zoo never
    recorded counts as restricted when the server holds an ``HF_TOKEN`` (it may have been fetched with it)."""
    restricted = repo_restricted(settings.hf_hub_cache, repo_id)
    if restricted is None:
        restricted = settings.hf_token is not None
    return authenticated or not restricted


def held_snapshot(settings: Settings, engine: sa.Engine, repo_id: str, revision: str,
                  authenticated: bool = False) -> Snapshot:
    """The snapshot of ``repo_id@revision`` zoo holds and the caller may read; a NotFoundError
    naming what is missing (a restricted repo is "not held" for callers without a token)."""
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise errors.ModelNotFoundError(f"{repo_id!r} is not a repo id (org/name)", model=repo_id)
    if not _REVISION_RE.match(revision) or ".." in revision.split("/"):
        raise errors.RevisionNotFoundError(f"{revision!r} is not a revision", model=repo_id)
    commits = _held_commits(engine, repo_id)
    if commits and not may_read(settings, repo_id, authenticated):
        raise errors.ModelNotFoundError(f"this mirror does not hold {repo_id}, or it needs a token",
                                        hint="private and gated repos are served only with 'Authorization: Bearer TOKEN' "
                                             "(a zoo token with the read scope)", model=repo_id)
    if not commits:
        raise errors.ModelNotFoundError(f"this mirror does not hold {repo_id}",
                                        hint=f"pull it on the server first: zoo pull {repo_id}", model=repo_id)
    commit = cached_commit(repo_id, revision, settings.hf_hub_cache)
    repo_dir = repo_cache_dir(settings.hf_hub_cache, repo_id)
    root = repo_dir / "snapshots" / (commit or "")
    if commit is None or not COMMIT_RE.match(commit) or commit not in commits or not root.is_dir():
        raise errors.RevisionNotFoundError(f"this mirror does not hold {repo_id}@{revision}",
                                           hint=f"revisions held: {', '.join(sorted(commits))}", model=repo_id)
    return Snapshot(repo_id, commit, root, repo_dir / "blobs")


def _held_commits(engine: sa.Engine, repo_id: str) -> set[str]:
    """Commits zoo fetched for ``repo_id`` (its own id, or a record whose weights live there)."""
    r, m = db.revisions.c, db.models.c
    with engine.connect() as conn:
        direct = {row[0] for row in conn.execute(sa.select(r.revision).where(r.model_id == repo_id))}
        if direct:  # the usual case: timm and Hugging Face records are named after their repo
            return direct
        others = conn.execute(sa.select(r.revision, m.record).join(db.models, m.id == r.model_id)).all()
    return {rev for rev, record in others if (record or {}).get("repo_id") == repo_id}


def snapshot_files(snap: Snapshot) -> list[MirrorFile]:
    out = []
    for path in sorted(snap.root.rglob("*")):
        rel = path.relative_to(snap.root).as_posix()
        if path.is_file():
            found = _file(snap, rel, path)
            if found is not None:
                out.append(found)
    return out


def snapshot_file(snap: Snapshot, rel: str) -> MirrorFile:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise EntryNotFoundError(f"{rel!r} is not a file path inside a repo")
    found = _file(snap, rel, snap.root / rel)
    if found is None:
        raise EntryNotFoundError(f"{rel} does not exist in {snap.repo_id}@{snap.commit}", model=snap.repo_id)
    return found


def _file(snap: Snapshot, rel: str, path: Path) -> MirrorFile | None:
    """The file at ``path`` if it is a cache entry: a link into this repo's blobs, or a plain file."""
    if not path.is_file():
        return None
    real = path.resolve()
    if path.is_symlink():
        if not real.is_relative_to(snap.blobs.resolve()):
            return None  # a link leading anywhere else is never served
        etag = real.name
    elif real.is_relative_to(snap.root.resolve()):
        etag = sha256_file(real)
    else:
        return None
    return MirrorFile(rel, real, real.stat().st_size, etag)


def file_blob(found: MirrorFile) -> Blob:
    """The file as a blob to send (its sha256 is known for LFS files only)."""
    return Blob(found.sha256 or "", found.size, Path(found.path).name, "application/octet-stream",
                [FilePart(found.real, found.size)])


def model_info(snap: Snapshot, files: list[MirrorFile], *, blobs: bool) -> dict[str, Any]:
    """The body of ``GET /api/models/{repo_id}[/revision/{revision}]``."""
    siblings = []
    for f in files:
        entry: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            entry.update(size=f.size, blobId=f.git_oid)
            if f.lfs:
                entry["lfs"] = {"size": f.size, "sha256": f.etag, "pointerSize": len(f.pointer())}
        siblings.append(entry)
    return {"_id": snap.commit[:24], "id": snap.repo_id, "modelId": snap.repo_id, "author": snap.repo_id.split("/")[0],
            "sha": snap.commit, "lastModified": _FIXED_DATE, "private": False, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(f.size for f in files)}


def tree(snap: Snapshot, files: list[MirrorFile], base: str, recursive: bool) -> list[dict[str, Any]]:
    """The body of ``GET /api/models/{repo_id}/tree/{revision}[/{base}]``: directories first."""
    dirs = {"/".join(f.path.split("/")[:i]) for f in files for i in range(1, f.path.count("/") + 1)}
    if base and base not in dirs:
        raise EntryNotFoundError(f"{base} does not exist in {snap.repo_id}@{snap.commit}", model=snap.repo_id)
    prefix = f"{base}/" if base else ""

    def shown(path: str) -> bool:
        return path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])

    out: list[dict[str, Any]] = [
        {"type": "directory", "oid": hashlib.sha1(f"tree {snap.commit} {d}".encode()).hexdigest(), "size": 0, "path": d}
        for d in sorted(dirs) if shown(d)]
    for f in files:
        if shown(f.path):
            entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.etag, "size": f.size, "pointerSize": len(f.pointer())}
            out.append(entry)
    return out
