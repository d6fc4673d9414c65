"""Safe extraction of model archives (``zoo import model.tar.gz --name N``).

An archive is untrusted: member names may climb out of the target (``..``,
absolute or drive paths), members may be links or devices, and a small file may
inflate to fill the disk. Extraction here writes only regular files and
directories strictly inside a fresh directory, refuses everything else with a
clear error, and counts the bytes it actually writes against a total-size cap
and a compression-ratio cap (headers can lie about sizes).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
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


_MAX_NAME, _MAX_PART = 4096, 255  # PATH_MAX and NAME_MAX (bytes) on Linux


def _shown(name: str) -> str:
    return repr(name) if len(name) <= 200 else f"{name[:200]!r}... ({len(name)} characters)"


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The safe relative path of a member, None for the archive root, or an error."""
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME:
        raise errors.UnsafeModelError(f"refusing {archive}: member {_shown(name)} has a name longer than {_MAX_NAME} bytes")
    clean = name[2:] if name.startswith("./") else name
    pure = PurePosixPath(clean)
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_PART for part in pure.parts):
        raise errors.UnsafeModelError(f"refusing {archive}: member {_shown(name)} has a path component longer than "
                                      f"{_MAX_PART} bytes")
    if ("\0" in name or "\\" in name or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", clean)):
        raise errors.UnsafeModelError(f"refusing {archive}: member {_shown(name)} points outside the extraction directory",
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
        members = _read_tar(archive, budget, settings)
    else:
        raise errors.UnsupportedFormatError(f"{archive.name} is neither a tar nor a zip archive",
                                            hint=f"zoo imports directories and {', '.join(ARCHIVE_SUFFIXES)} archives")
    try:
        _extract_members(members, dest, budget, settings)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error, lzma.LZMAError,
            OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O error (a full disk...), not a damaged stream (gzip, bz2 raise OSError without errno)
        raise errors.InvalidModelError(f"{archive.name} is a damaged or unsupported archive: {str(exc)[:200]}",
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
            raise errors.UnsafeModelError(f"refusing {budget.name}: member {_shown(name)} appears twice")
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
    return errors.UnsafeModelError(f"refusing {archive}: member {_shown(name)} is a {what}; zoo extracts only regular files",
                                   hint="replace links with the files themselves")


# --- tar, read by hand: header sizes are capped before anything is read into memory -------------
_BLOCK = 512
_TAR_FILE, _TAR_DIR = (b"0", b"\0", b"7"), (b"5",)
_TAR_KINDS = {b"1": "hard link", b"2": "symbolic link", b"3": "device", b"4": "device", b"6": "special file"}


def _open_tar_stream(archive: Path) -> IO[bytes]:
    """The archive's decompressed bytes, read lazily (gzip, bzip2, xz or none, by magic)."""
    with open(archive, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(archive, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(archive, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(archive, "rb")
    return open(archive, "rb")


def _octal(field: bytes, archive: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256: only sizes that fit the caps are of interest
        value = int.from_bytes(field[1:], "big")
        return -value if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise _damaged(archive, "a header number is not octal")
    return int(text, 8)


def _damaged(archive: str, why: str) -> errors.InvalidModelError:
    return errors.InvalidModelError(f"{archive} is a damaged or unsupported archive: {why}", hint="fetch the archive again")


class _TarReader:
    """Walk a tar archive header by header. Extended headers (pax ``x``/``g``, GNU ``L``/``K``) are
    refused when their declared size is over ``ZOO_ARCHIVE_MAX_HEADER_BYTES`` before they are read,
    and every byte read (headers and skipped data included) is spent from the budget."""

    def __init__(self, stream: IO[bytes], budget: _Budget, settings: Settings) -> None:
        self.stream, self.budget, self.max_header = stream, budget, settings.archive_max_header_bytes
        self.pending = 0  # bytes of extended headers read since the last member

    def read(self, n: int, spend: bool = True) -> bytes:
        data = self.stream.read(n)
        if spend:  # member data is spent as it is written
            self.budget.spend(len(data))
        if len(data) != n:
            raise _damaged(self.budget.name, "it ends in the middle of a member")
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            n -= len(self.read(min(n, _CHUNK)))

    def extended(self, size: int, what: str) -> bytes:
        self.pending += size  # every extended header before one member counts: a chain of small ones too
        if size > self.max_header or self.pending > self.max_header:
            raise errors.UnsafeModelError(
                f"refusing {self.budget.name}: a {what} of {size} bytes ({self.pending} bytes of extended headers for one "
                f"member; more than ZOO_ARCHIVE_MAX_HEADER_BYTES={self.max_header}); it looks like a header bomb", hint="import the extracted directory instead")
        data = self.read(size)
        self.skip(-size % _BLOCK)
        return data

    def headers(self) -> Iterator[tuple[str, bytes, int]]:
        """(name, type flag, data size) per member, with pax and GNU long names applied."""
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            block = self.stream.read(_BLOCK)
            self.budget.spend(len(block))
            if len(block) < _BLOCK or block == bytes(_BLOCK):
                return  # end of archive (two zero blocks, or a truncated tail tarfile also accepts)
            if _octal(block[148:156], self.budget.name) != sum(block[:148]) + 256 + sum(block[156:]):
                raise _damaged(self.budget.name, "a header checksum does not match")
            kind, size = block[156:157], _octal(block[124:136], self.budget.name)
            if size < 0:
                raise _damaged(self.budget.name, "a member has a negative size")
            if kind in (b"x", b"g"):
                records = _pax_records(self.extended(size, "pax header"), self.budget.name)
                if kind == b"x":
                    pax.update(records)
                continue
            if kind in (b"L", b"K"):
                value = self.extended(size, "GNU long name" if kind == b"L" else "GNU long link name")
                if kind == b"L":
                    long_name = value.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            name = block[:100].split(b"\0", 1)[0]
            if block[257:263] == b"ustar\0" and block[345:500].strip(b"\0"):  # POSIX ustar prefix (not GNU)
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
            name_text = pax.get("path") or long_name or name.decode("utf-8", "surrogateescape")
            if "size" in pax:
                if not pax["size"].isdigit():
                    raise _damaged(self.budget.name, "a pax size is not a number")
                size = int(pax["size"])
            pax, long_name, self.pending = {}, None, 0
            yield name_text, kind, size


def _pax_records(data: bytes, archive: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        match = re.match(rb"(\d{1,20}) ", data[pos:pos + 21])
        length = int(match.group(1)) if match else 0
        record = data[pos:pos + length]
        if not match or length <= len(match.group(0)) or not record.endswith(b"\n") or b"=" not in record:
            raise _damaged(archive, "a pax header record is malformed")
        key, _, value = record[len(match.group(0)):-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class _MemberStream(io.RawIOBase):
    """The data of one tar member: at most ``size`` bytes of the archive stream."""

    def __init__(self, reader: _TarReader, size: int) -> None:
        self.reader, self.left = reader, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        self.left -= n
        return self.reader.read(n, spend=False)


def _read_tar(archive: Path, budget: _Budget, settings: Settings) -> Iterator[Member]:
    with _open_tar_stream(archive) as stream:
        reader = _TarReader(stream, budget, settings)
        for name, kind, size in reader.headers():
            if kind in _TAR_DIR:
                reader.skip(size + -size % _BLOCK)
                yield name, "dir", None
            elif kind in _TAR_FILE:
                member = _MemberStream(reader, size)
                yield name, "file", member
                reader.skip(member.left + -size % _BLOCK)  # what the consumer left, then the padding
            else:
                raise _refuse_kind(archive.name, name, _TAR_KINDS.get(kind, f"member of tar type {kind!r}"))


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
