"""Where the service reads artifact bytes from, named by the sha256 of those bytes.

``Storage`` is the seam: ``LocalStorage`` serves the content-addressed store in
``ZOO_HOME`` (or a shared directory mounted there); ``zoo.storage.s3.S3Storage``
serves an S3-compatible bucket instead; ``ZOO_STORAGE`` chooses (``zoo.storage.make_storage``).

Two kinds of blob share one address space:

- a file: the primary file of an artifact (``model.onnx``), by its own sha256;
- an archive: every file of a directory artifact (a transformers model with its
  tokenizer, a SavedModel) as one deterministic tar (sorted names, zero times and
  owners), so the same files always give the same bytes and the same sha256. Its
  layout is planned without reading the files, which makes ranges cheap; the
  sha256 is computed once, when the job that produced the artifact finishes.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import sqlalchemy as sa

from zoo import db, errors
from zoo.settings import Settings
from zoo.storage.artifacts import MANIFEST, Artifact, ArtifactStore

CHUNK = 1024 * 1024
_RECORD = tarfile.RECORDSIZE


@dataclass(frozen=True)
class FilePart:
    path: Path
    size: int


Part = bytes | FilePart


@dataclass
class Blob:
    """Bytes to send: their sha256, size and the parts that make them up, in order."""

    sha256: str
    size: int
    filename: str
    media_type: str
    parts: list[Part] = field(default_factory=list)
    verified: bool = True

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive (default: to the last), in chunks of at most 1 MiB."""
        end = self.size - 1 if end is None else end
        offset = 0
        for part in self.parts:
            length = len(part) if isinstance(part, bytes) else part.size
            lo, hi = max(start, offset), min(end + 1, offset + length)
            if lo < hi:
                yield from _read_part(part, lo - offset, hi - lo)
            offset += length
            if offset > end:
                return


def read_cached(blob: "Blob", start: int, end: int) -> bytes | memoryview | None:
    """Up to 1 MiB of ``blob`` from ``start`` (not past ``end``) if the page cache holds it, without waiting
    on the disk (``preadv(RWF_NOWAIT)``, as nginx's thread pools do); None when a read would block, so the
    caller reads in a thread instead. Most artifact downloads are served this way, with no thread hop."""
    offset = 0
    for part in blob.parts:
        length = len(part) if isinstance(part, bytes) else part.size
        if start < offset + length:
            want = min(CHUNK, end + 1 - start, offset + length - start)
            if isinstance(part, bytes):
                return part[start - offset:start - offset + want]
            return _pread_nowait(part.path, start - offset, want)
        offset += length
    return None


def _pread_nowait(path: Path, offset: int, length: int) -> memoryview | None:
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None or not hasattr(os, "preadv"):
        return None
    buf = bytearray(length)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [buf], offset, flag)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a filesystem without it
        return None
    finally:
        os.close(fd)
    return memoryview(buf)[:got] if got > 0 else None  # 0: let the blocking read tell EOF from a shrunk file


def _read_part(part: Part, start: int, length: int) -> Iterator[bytes]:
    if isinstance(part, bytes):
        yield part[start:start + length]
        return
    fd = os.open(part.path, os.O_RDONLY)
    try:
        while length > 0:
            chunk = os.pread(fd, min(CHUNK, length), start)
            if not chunk:  # the file shrank under us: never send short content silently
                raise errors.IntegrityError(f"{part.path.name} is shorter than its recorded size",
                                            hint="run `zoo cache verify`")
            yield chunk
            start += len(chunk)
            length -= len(chunk)
    finally:
        os.close(fd)


class Storage(Protocol):
    def find(self, sha256: str) -> Blob | None:
        """The blob whose bytes hash to ``sha256``, or None."""

    def index_archive(self, digest: str) -> tuple[str, int] | None:
        """Make the artifact ``digest`` downloadable as one archive if it has several files:
        (sha256, size), or None for a single-file artifact."""


class LocalStorage:
    """Artifacts in the local content-addressed store, indexed by the registry database."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        self.store = ArtifactStore(settings.home)
        self.engine = engine

    def find(self, sha256: str) -> Blob | None:
        if not is_sha256(sha256):
            return None
        a = db.artifacts.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(a.digest, a.verified).where(a.sha256 == sha256)).all()
            archive = conn.execute(sa.select(db.archives.c.digest, db.archives.c.size)
                                   .where(db.archives.c.sha256 == sha256)).first()
        for digest, verified in rows:
            art = self.store.get(digest, verified=verified)
            if art is not None and art.primary_entry()["sha256"] == sha256:
                return self._file_blob(art)
        if archive is not None:
            art = self.artifact(archive.digest)
            if art is not None:
                parts = archive_parts(art)
                if sum(len(p) if isinstance(p, bytes) else p.size for p in parts) == archive.size:
                    return Blob(sha256, archive.size, f"{_stem(art)}.tar", "application/x-tar", parts, art.verified)
        return None

    def index_archive(self, digest: str) -> tuple[str, int] | None:
        art = self.artifact(digest)
        if art is None:
            raise errors.ArtifactNotFoundError(f"no artifact {digest}")
        if len(art.files) < 2:
            return None
        parts = archive_parts(art)
        blob = Blob("", sum(len(p) if isinstance(p, bytes) else p.size for p in parts), "", "", parts)
        h = hashlib.sha256()
        for chunk in blob.read():
            h.update(chunk)
        sha = h.hexdigest()
        with self.engine.begin() as conn:
            db.upsert(conn, db.archives, [{"sha256": sha, "digest": digest, "size": blob.size}], update=False)
        return sha, blob.size

    def artifact(self, digest: str) -> Artifact | None:
        return self.store.get(digest) or self.store.get(digest, verified=False)

    def _file_blob(self, art: Artifact) -> Blob:
        entry = art.primary_entry()
        path = _inside(art, art.primary)
        return Blob(entry["sha256"], entry["size"], Path(art.primary).name, "application/octet-stream",
                    [FilePart(path, entry["size"])], art.verified)


def archive_parts(art: Artifact) -> list[Part]:
    """The tar of ``art``'s files and manifest, planned from the recorded sizes."""
    top = _stem(art)
    parts: list[Part] = []
    names = sorted([f["path"] for f in art.files] + [MANIFEST])
    sizes = {f["path"]: f["size"] for f in art.files}
    for name in names:
        path = _inside(art, name)
        size = sizes.get(name, path.stat().st_size)
        info = tarfile.TarInfo(f"{top}/{name}")
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
        parts += [info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), FilePart(path, size)]
        if size % tarfile.BLOCKSIZE:
            parts.append(b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
    total = sum(len(p) if isinstance(p, bytes) else p.size for p in parts) + 2 * tarfile.BLOCKSIZE
    parts.append(b"\0" * (2 * tarfile.BLOCKSIZE + (-total) % _RECORD))
    return parts


def _inside(art: Artifact, name: str) -> Path:
    """``art.path / name``, refused unless it is a plain file inside the artifact directory."""
    path = art.path / name
    root = art.path.resolve()
    if path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise errors.IntegrityError(f"artifact {art.digest[:16]}: {name!r} is not a file inside it",
                                    hint="run `zoo cache verify`")
    return path


def _stem(art: Artifact) -> str:
    return f"zoo-{art.digest[:16]}"


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
