"""The artifact store: content-addressed directories under ``ZOO_HOME``.

Layout::

    ZOO_HOME/artifacts/<digest>/      verified artifacts (immutable)
    ZOO_HOME/quarantine/<digest>/     failed parity: kept for inspection only
    ZOO_HOME/tmp/<random>/            staging; renamed into place when complete
    ZOO_HOME/locks/<key>.lock         one conversion per cache key at a time

An artifact's digest is the sha256 of its canonical file list (path, sha256,
size of every file except ``zoo.json``). A directory appears under
``artifacts/`` only by one ``os.rename`` of a complete staging directory, so a
crash never leaves a half artifact visible; stale staging directories are
removed by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from zoo import errors, hooks
from zoo.hashing import sha256_file, sha256_json

MANIFEST = "zoo.json"
_STALE_TMP_S = 24 * 3600


@dataclass
class Artifact:
    digest: str
    path: Path  # the artifact directory
    primary: str  # main file inside it, e.g. "model.onnx"
    files: list[dict[str, Any]]
    verified: bool
    mtimes: dict[str, int] | None = None  # st_mtime_ns of each file when published (not part of the digest)

    def manifest_dict(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}

    @property
    def primary_path(self) -> Path:
        return self.path / self.primary

    def primary_entry(self) -> dict[str, Any]:
        return next(f for f in self.files if f["path"] == self.primary)


class ArtifactStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.artifacts = home / "artifacts"
        self.quarantine = home / "quarantine"
        self.tmp = home / "tmp"
        self.locks = home / "locks"

    # --- writing -----------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory on the store's filesystem, removed unless published."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, staged: Path, primary: str, manifest: dict[str, Any], *, verified: bool) -> Artifact:
        """Hash every staged file, write ``zoo.json``, rename into place."""
        _seal(staged)
        hashed_at = time.time_ns()
        signatures = _signatures(staged)
        files = hash_tree(staged)
        if not any(f["path"] == primary for f in files):
            raise errors.ConversionError(f"the converter did not write {primary}")
        digest = sha256_json({"files": files})
        mtimes = {f["path"]: (staged / f["path"]).stat().st_mtime_ns for f in files}
        manifest = {**manifest, "digest": digest, "primary": primary, "files": files, "verified": verified, "mtimes": mtimes}
        _write_json_durably(staged / MANIFEST, manifest)
        _fsync_tree(staged)
        if _changed_since(staged, files, signatures, hashed_at):  # what is about to become visible is what was hashed
            raise errors.IntegrityError("a staged file changed while it was being published; nothing was published",
                                        hint="another process is writing into zoo's staging directory: run the command again")
        hooks.pause_at("publish.staged")
        parent = self.artifacts if verified else self.quarantine
        parent.mkdir(parents=True, exist_ok=True)
        final = parent / digest
        try:
            os.rename(staged, final)
        except OSError:
            if not (final / MANIFEST).is_file():  # a different failure than "already there"
                raise
            existing = self.get(digest, verified=verified)
            if existing is None or self.verify(existing):  # the copy there is damaged: replace it
                self.remove_path(final)
                os.rename(staged, final)
            # else: identical content already published (a concurrent run): keep that one
        _fsync_dir(parent)
        hooks.pause_at("publish.renamed")
        return Artifact(digest, final, primary, files, verified)

    # --- reading -----------------------------------------------------------
    def get(self, digest: str, *, verified: bool = True) -> Artifact | None:
        if not _is_digest(digest):
            return None
        path = (self.artifacts if verified else self.quarantine) / digest
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            return Artifact(digest, path, manifest["primary"], manifest["files"], manifest.get("verified", verified),
                            manifest.get("mtimes"))
        except (ValueError, KeyError, TypeError):  # a damaged zoo.json: an artifact with nothing verifiable
            return Artifact(digest, path, MANIFEST, [{"path": MANIFEST, "sha256": "", "size": -1}], verified)

    def manifest(self, digest: str, *, verified: bool = True) -> dict[str, Any] | None:
        art = self.get(digest, verified=verified)
        return json.loads((art.path / MANIFEST).read_text()) if art else None

    def quick_check(self, art: Artifact) -> bool:
        """Every file present with its recorded size, and unmodified since it was
        published: a file whose mtime moved is re-hashed (cheap on the hot path;
        `verify` re-hashes everything, which also catches silent media errors)."""
        for entry in art.files:
            path = art.path / entry["path"]
            if not path.is_file():
                return False
            st = path.stat()
            if st.st_size != entry["size"]:
                return False
            recorded = (art.mtimes or {}).get(entry["path"])
            if recorded is not None and st.st_mtime_ns != recorded and sha256_file(path) != entry["sha256"]:
                return False
        return True

    def verify(self, art: Artifact) -> list[str]:
        """Re-hash every file; return the problems found (empty when clean)."""
        problems = []
        for entry in art.files:
            path = art.path / entry["path"]
            if not path.is_file():
                problems.append(f"{entry['path']}: missing")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 mismatch")
        if not problems and sha256_json({"files": art.files}) != art.digest:
            problems.append("manifest does not match the directory digest")
        return problems

    def list(self) -> list[Artifact]:
        out = []
        for verified, parent in ((True, self.artifacts), (False, self.quarantine)):
            if parent.is_dir():
                for child in sorted(parent.iterdir()):
                    art = self.get(child.name, verified=verified)
                    if art is not None:
                        out.append(art)
        return out

    def remove(self, art: Artifact) -> None:
        self.remove_path(art.path)

    def remove_path(self, path: Path) -> None:
        """Rename aside first so readers never see a half-deleted artifact."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        trash = self.tmp / f"rm-{uuid.uuid4().hex}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def clean_stale(self) -> int:
        """Remove staging dirs left by processes that no longer exist."""
        removed = 0
        if not self.tmp.is_dir():
            return 0
        for child in self.tmp.iterdir():
            pid = child.name.split("-", 1)[0]
            dead = pid.isdigit() and not _pid_alive(int(pid))
            old = time.time() - child.stat().st_mtime > _STALE_TMP_S
            if dead or old or child.name.startswith("rm-"):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed


def copy_out(art: Artifact, dest: Path) -> Path:
    """Copy an artifact (its primary file, or the whole directory when it has
    several files) to ``dest`` atomically: write beside it, then rename."""
    dest = dest.expanduser().resolve()
    multi = len(art.files) > 1
    target = dest / art.primary if dest.is_dir() and not multi else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.zoo-{uuid.uuid4().hex[:8]}.incomplete"
    try:
        if multi:
            shutil.copytree(art.path, tmp, ignore=shutil.ignore_patterns())
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        else:
            shutil.copyfile(art.primary_path, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    return target / art.primary if multi else target


def hash_tree(root: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        files.append({"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size})
    return files


# A staged file is checked again before it becomes visible. Files under REHASH_BELOW bytes are hashed again; a
# larger one is trusted unchanged when its stat signature (size, inode, mtime and ctime to the nanosecond) is the
# one taken before it was hashed, unless its content was written within RACY_NS of that moment: the kernel's
# timestamps are coarse (a clock tick), so a write in the same tick as the file's last one leaves its mtime equal
# (git's "racy git" problem, solved the same way). A write long after the last one moves mtime; ctime, which a
# program cannot set (utime sets it to now), catches a write that puts mtime back. For a 4 GB model this saves a
# second full read and hash of the weights (~2-3 s) at publish.
REHASH_BELOW = 64 << 20
RACY_NS = 2_000_000_000


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns


def _signatures(root: Path) -> dict[str, tuple[int, ...]]:
    return {p.relative_to(root).as_posix(): _signature(p.stat())
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _changed_since(root: Path, files: list[dict[str, Any]], signatures: dict[str, tuple[int, ...]],
                   hashed_at: int) -> bool:
    """Whether any file hashed into ``files`` changed (or a file came or went) since ``signatures`` were taken."""
    now = _signatures(root)
    now.pop(MANIFEST, None)
    if set(now) != {f["path"] for f in files}:
        return True
    for f in files:
        sig = now[f["path"]]
        if sig != signatures.get(f["path"]):
            return True
        racy = hashed_at - sig[3] < RACY_NS  # content written lately (ctime is _seal's chmod: always recent)
        if (f["size"] < REHASH_BELOW or racy) and sha256_file(root / f["path"]) != f["sha256"]:
            return True
    return False


def _seal(root: Path) -> None:
    """Make staged files read-only before they are hashed: what is hashed is what is kept."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o444)


def _write_json_durably(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
