"""Safe extraction of model archives (``zoo import model.tar.gz --name N``).

An archive is untrusted: member names may climb out of the target (``..``,
absolute or drive paths), members may be links or devices, and a small file may
inflate to fill the disk. Extraction here writes only regular files and
directories strictly inside a fresh directory, refuses everything else with a
clear error, and counts the bytes it actually writes against a total-size cap
and a compression-ratio cap (headers can lie about sizes).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from zoo import errors
from zoo.settings import Settings

_CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class _Budget:
    """Bytes written so far against the caps."""

    def __init__(self, archive: Path, settings: Settings) -> None:
        self.name = archive.name
        self.limit = min(settings.archive_max_bytes, int(settings.archive_max_ratio * max(archive.stat().st_size, 1)) + (1 << 20))
        self.settings = settings
        self.written = 0

    def spend(self, n: int) -> None:
        self.written += n
        if self.written > self.limit:
            s = self.settings
            raise errors.UnsafeModelError(
                f"refusing {self.name}: it expands past {self.limit} bytes (caps: ZOO_ARCHIVE_MAX_BYTES={s.archive_max_bytes}, "
                f"ZOO_ARCHIVE_MAX_RATIO={s.archive_max_ratio:g} times the archive's size); it looks like an archive bomb",
                hint="import the extracted directory instead, or raise the caps if the archive is genuine")


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The safe relative path of a member, None for the archive root, or an error."""
    clean = name[2:] if name.startswith("./") else name
    pure = PurePosixPath(clean)
    if ("\0" in name or "\\" in name or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", clean)):
        raise errors.UnsafeModelError(f"refusing {archive}: member {name!r} points outside the extraction directory",
                                      hint="archives must hold relative paths without '..'")
    return pure if pure.parts and pure != PurePosixPath(".") else None


def extract_archive(archive: Path, dest: Path, settings: Settings) -> Path:
    """Extract ``archive`` into the new directory ``dest``; return the model's root
    inside it (the single top-level directory, when the archive wraps one)."""
    dest.mkdir(parents=True)
    budget = _Budget(archive, settings)
    kind = archive_kind(archive)
    if kind == "zip":
        members = _zip_members(archive)
    elif kind == "tar":
        members = _tar_members(archive)
    else:
        raise errors.UnsupportedFormatError(f"{archive.name} is neither a tar nor a zip archive",
                                            hint=f"zoo imports directories and {', '.join(ARCHIVE_SUFFIXES)} archives")
    try:
        _extract_members(members, dest, budget, settings)
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error) as exc:
        raise errors.InvalidModelError(f"{archive.name} is a damaged or unsupported archive: {exc}",
                                       hint="fetch the archive again") from None
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def archive_kind(path: Path) -> str | None:
    """"zip" or "tar" by the leading magic bytes (zipfile.is_zipfile looks at the end of
    the file, so a tar whose last member is a zip would pass for one)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    return None


Member = tuple[str, str, "IO[bytes] | None"]  # (name, "file" | "dir", stream)


def _extract_members(members: Iterator[Member], dest: Path, budget: _Budget, settings: Settings) -> None:
    seen: set[PurePosixPath] = set()
    for count, (name, kind, stream) in enumerate(members, 1):
        if count > settings.archive_max_members:
            raise errors.UnsafeModelError(f"refusing {budget.name}: more than {settings.archive_max_members} members "
                                          "(ZOO_ARCHIVE_MAX_MEMBERS)")
        rel = member_path(name, budget.name)
        if rel is None:
            continue
        if rel in seen:
            raise errors.UnsafeModelError(f"refusing {budget.name}: member {name!r} appears twice")
        seen.add(rel)
        target = dest.joinpath(*rel.parts)
        if kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as out:
            assert stream is not None
            while chunk := stream.read(_CHUNK):
                budget.spend(len(chunk))
                out.write(chunk)


def _refuse_kind(archive: str, name: str, what: str) -> errors.UnsafeModelError:
    return errors.UnsafeModelError(f"refusing {archive}: member {name!r} is a {what}; zoo extracts only regular files",
                                   hint="replace links with the files themselves")


def _tar_members(archive: Path) -> Iterator[Member]:
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            if info.isdir():
                yield info.name, "dir", None
            elif info.isreg():
                yield info.name, "file", tar.extractfile(info)
            else:
                what = ("symbolic link" if info.issym() else "hard link" if info.islnk()
                        else "device" if info.isdev() else "special file")
                raise _refuse_kind(archive.name, info.name, what)


def _zip_members(archive: Path) -> Iterator[Member]:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse_kind(archive.name, info.filename, "symbolic link")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a plain file
                raise _refuse_kind(archive.name, info.filename, "special file")
            if info.is_dir():
                yield info.filename, "dir", None
            else:
                with zf.open(info) as stream:
                    yield info.filename, "file", stream
