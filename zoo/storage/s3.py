"""Artifacts in an S3-compatible bucket (``ZOO_STORAGE=s3``), for workers and an API on different machines.

Layout of the bucket (``ZOO_S3_BUCKET``; ``ZOO_S3_ENDPOINT_URL`` for MinIO, Ceph,
Garage and the like; credentials from the usual ``AWS_*`` variables)::

    blobs/sha256/<sha256>          bytes named by their own sha256: artifact files, archives
    artifacts/<digest>/zoo.json    an artifact's manifest, written after all its blobs

A worker publishes into its local store as always (``zoo.storage.artifacts``), then uploads:
every file, the archive of a directory artifact, and the manifest last, so a
manifest in the bucket means every blob it names is there. S3 makes an object
visible only once it is complete (a single PUT, or a multipart upload when it is
completed at the end; boto3 aborts it on failure), so no partial object ever
appears under a final key; an upload is checked against the expected size.

The API serves ``GET /v1/artifacts/{sha256}`` from the bucket (ranges passed
through); a worker that finds an artifact indexed but not in its own store
fetches it (``fetch_artifact``), checking every byte against the manifest before
the artifact is renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from zoo import db, errors
from zoo.settings import Settings
from zoo.storage.artifacts import MANIFEST, Artifact, ArtifactStore
from zoo.storage.blobs import CHUNK, Blob, LocalStorage, is_sha256

log = logging.getLogger("zoo.storage.s3")
_MULTIPART_BYTES = 64 * 1024 * 1024


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256}"


def manifest_key(digest: str) -> str:
    return f"artifacts/{digest}/{MANIFEST}"


class Bucket:
    """The few S3 operations zoo needs, with S3's failures turned into zoo's errors."""

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise errors.UsageError("ZOO_STORAGE=s3 needs a bucket", hint="set ZOO_S3_BUCKET (and ZOO_S3_ENDPOINT_URL "
                                    "for an S3-compatible server other than AWS)")
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError as exc:
            raise errors.MissingDependencyError("ZOO_STORAGE=s3 needs boto3",
                                                hint="pip install 'zoo-hub[distributed]'") from exc
        session = boto3.session.Session()
        config = Config(retries={"max_attempts": 5, "mode": "standard"},
                        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
                        max_pool_connections=32)
        self.name = settings.s3_bucket
        self.endpoint = settings.s3_endpoint_url or "AWS"
        self.client = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config,
                                     region_name=session.region_name or "us-east-1")
        self.transfer = TransferConfig(multipart_threshold=_MULTIPART_BYTES, multipart_chunksize=_MULTIPART_BYTES)

    def size(self, key: str) -> int | None:
        """The object's size, or None when there is none."""
        try:
            return int(self._call("head_object", key)["ContentLength"])
        except errors.NotFoundError:
            return None

    def put_file(self, key: str, path: Path, size: int) -> None:
        self._upload(key, size, lambda: self.client.upload_file(str(path), self.name, key, Config=self.transfer))

    def put_stream(self, key: str, chunks: Iterator[bytes], size: int) -> None:
        self._upload(key, size, lambda: self.client.upload_fileobj(ChunkReader(chunks), self.name, key,
                                                                   Config=self.transfer))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._upload(key, len(data), lambda: self.client.put_object(Bucket=self.name, Key=key, Body=data))

    def read(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive, in chunks; IntegrityError if fewer arrive."""
        body = self._call("get_object", key, Range=f"bytes={start}-{end}")["Body"]
        want = end - start + 1
        try:
            for chunk in body.iter_chunks(CHUNK):
                want -= len(chunk)
                yield chunk
        finally:
            body.close()
        if want != 0:
            raise errors.IntegrityError(f"s3://{self.name}/{key} gave {'fewer' if want > 0 else 'more'} bytes "
                                        "than its recorded size", hint="re-upload the artifact from a worker")

    def get_bytes(self, key: str) -> bytes | None:
        try:
            body = self._call("get_object", key)["Body"]
        except errors.NotFoundError:
            return None
        with body:
            return body.read()

    def _upload(self, key: str, size: int, upload: Any) -> None:
        """Upload unless the (content-addressed) key already holds ``size`` bytes; check the result."""
        if self.size(key) == size:
            return
        self._guard(key, upload)
        if self.size(key) != size:
            raise errors.IntegrityError(f"s3://{self.name}/{key} does not hold the {size} bytes just uploaded",
                                        hint="check the S3 server; the upload is retried on the next attempt")

    def _call(self, op: str, key: str, **kwargs: Any) -> dict[str, Any]:
        return self._guard(key, lambda: getattr(self.client, op)(Bucket=self.name, Key=key, **kwargs))

    def _guard(self, key: str, call: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise errors.NotFoundError(f"s3://{self.name}/{key} does not exist") from exc
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise errors.AuthError(f"S3 refused access to s3://{self.name}/{key} ({code})",
                                       hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from exc
            if code == "NoSuchBucket":
                raise errors.NotFoundError(f"the bucket {self.name!r} does not exist at {self.endpoint}",
                                           hint="create it, or fix ZOO_S3_BUCKET") from exc
            raise errors.NetworkError(f"S3 ({self.endpoint}) failed on {key}: {code or exc}",
                                      hint="check ZOO_S3_ENDPOINT_URL and the S3 server") from exc
        except BotoCoreError as exc:
            raise errors.NetworkError(f"S3 ({self.endpoint}) is unreachable: {exc}",
                                      hint="check ZOO_S3_ENDPOINT_URL and the S3 server") from exc


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (what boto3's upload_fileobj reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


@dataclass
class S3Blob(Blob):
    """A blob whose bytes come from the bucket, a range at a time."""

    bucket: Bucket | None = None
    key: str = ""

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self.size - 1 if end is None else end
        if end < start:
            return iter(())
        return self.bucket.read(self.key, start, end)


class S3Storage:
    """Artifacts served from the bucket; published from the local store, which stays the staging area."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        self.local = LocalStorage(settings, engine)
        self.engine = engine
        self.bucket = Bucket(settings)

    def find(self, sha256: str) -> Blob | None:
        if not is_sha256(sha256):
            return None
        a, r = db.artifacts.c, db.archives.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(a.primary_file, a.verified, a.size).where(a.sha256 == sha256)
                               .order_by(a.verified.desc())).first()
            archive = None if row else conn.execute(sa.select(r.digest, r.size).where(r.sha256 == sha256)).first()
        if row is None and archive is None:
            return None
        size = self.bucket.size(blob_key(sha256))
        if size is None:
            return None  # indexed, but its worker has not uploaded it (yet)
        expected = row.size if row else archive.size
        if size != expected:
            raise errors.IntegrityError(f"s3 object {blob_key(sha256)} holds {size} bytes, not the recorded {expected}",
                                        hint="remove the object; the next job that needs it uploads it again")
        if row is not None:
            return S3Blob(sha256, size, posixpath.basename(row.primary_file), "application/octet-stream",
                          verified=row.verified, bucket=self.bucket, key=blob_key(sha256))
        return S3Blob(sha256, size, f"zoo-{archive.digest[:16]}.tar", "application/x-tar", bucket=self.bucket,
                      key=blob_key(sha256))

    def index_archive(self, digest: str) -> tuple[str, int] | None:
        """Upload the artifact (when this node has it) and answer as ``LocalStorage`` does."""
        art = self.local.artifact(digest)
        if art is None:  # published by another node: the index knows its archive
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(db.archives.c.sha256, db.archives.c.size)
                                   .where(db.archives.c.digest == digest)).first()
            return (row.sha256, row.size) if row else None
        archive = self.local.index_archive(digest)
        upload_artifact(self.bucket, self.local, art, archive)
        return archive


def upload_artifact(bucket: Bucket, local: LocalStorage, art: Artifact, archive: tuple[str, int] | None) -> None:
    """Every file of ``art`` by its sha256, its archive, then its manifest."""
    for entry in art.files:
        bucket.put_file(blob_key(entry["sha256"]), art.path / entry["path"], entry["size"])
    if archive is not None:
        blob = local.find(archive[0])
        bucket.put_stream(blob_key(archive[0]), blob.read(), archive[1])
    bucket.put_bytes(manifest_key(art.digest), (art.path / MANIFEST).read_bytes())
    log.info("uploaded artifact %s (%d file(s)) to s3://%s", art.digest[:16], len(art.files), bucket.name)


def fetch_artifact(settings: Settings, store: ArtifactStore, digest: str) -> Artifact | None:
    """Bring the artifact ``digest`` from the bucket into the local store; None if the bucket lacks it."""
    bucket = Bucket(settings)
    raw = bucket.get_bytes(manifest_key(digest))
    if raw is None:
        return None
    manifest = json.loads(raw)
    files = [_checked_entry(f, digest) for f in manifest.get("files", [])]
    if not any(f["path"] == manifest.get("primary") for f in files):
        raise errors.IntegrityError(f"the manifest of artifact {digest[:16]} in the bucket names no primary file",
                                    hint="remove it from the bucket; a worker uploads it again")
    with store.staging() as staged:
        for entry in files:
            _download(bucket, entry, staged / entry["path"])
        base = {k: v for k, v in manifest.items() if k not in ("digest", "primary", "files", "verified")}
        art = store.publish(staged, manifest["primary"], base, verified=bool(manifest.get("verified", True)))
    if art.digest != digest:  # cannot happen when every file matched its entry; never serve it if it does
        store.remove(art)
        raise errors.IntegrityError(f"artifact {digest[:16]} from the bucket hashes to {art.digest[:16]}")
    log.info("fetched artifact %s from s3://%s", digest[:16], bucket.name)
    return art


def _checked_entry(entry: dict[str, Any], digest: str) -> dict[str, Any]:
    path = str(entry.get("path", ""))
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts)
            or not is_sha256(str(entry.get("sha256"))) or not isinstance(entry.get("size"), int)):
        raise errors.IntegrityError(f"the manifest of artifact {digest[:16]} in the bucket has a bad entry: {path!r}",
                                    hint="remove it from the bucket; a worker uploads it again")
    return entry


def _download(bucket: Bucket, entry: dict[str, Any], dest: Path) -> None:
    """Write one blob to ``dest``, refusing it unless its size and sha256 match the manifest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    key = blob_key(entry["sha256"])
    with open(dest, "wb") as out:
        if entry["size"]:
            for chunk in bucket.read(key, 0, entry["size"] - 1):
                h.update(chunk)
                out.write(chunk)
    if h.hexdigest() != entry["sha256"]:
        raise errors.IntegrityError(f"s3 object {key} does not hash to its name ({entry['path']})",
                                    hint="remove the object; the next job that needs it uploads it again")
