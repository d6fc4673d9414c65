"""Model files a user holds as sources of ``zoo convert``: an ONNX file, a TensorFlow SavedModel, a
``.keras`` file, a ``.tflite`` file, a ``.pt2`` zoo wrote (the kinds in ``zoo.converters.loaders.files``).

The identity is the content: the sha256 of the file (or of every file of a directory), so the same bytes
anywhere give the same artifact. The source is checked end to end against itself, on inputs made from
its own signature and graph (``zoo.converters.parity.infer``: image sizes, sample rates, table ranges,
state batch axes) or given by the user (``--input``, ``--inputs``, ``--samples``), and tried on the
source before anything is converted. A ``.pt2`` is loaded only if zoo wrote it (``torch.export.load``
can run code from an archive, see ``zoo.converters.loaders.pt2_archive``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors
from zoo.registry.records import FileInfo
from zoo.sources.base import Opened, Source

if TYPE_CHECKING:
    from zoo.converters.loaders.files import SourceKind
    from zoo.progress import Progress
    from zoo.registry.index import Registry
    from zoo.settings import Settings


def import_name(path: Path) -> str:
    """The local name a model directory or archive is imported under: its file name, made safe."""
    from zoo.archives import ARCHIVE_SUFFIXES

    stem = path.resolve().name
    for suffix in ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem).strip(".-") or "model"


class FileSource(Source):
    kind = "file"

    def __init__(self, path: Path, kind: SourceKind | None, settings: Settings, registry: Registry) -> None:
        super().__init__()
        self.path, self.source_kind, self.settings, self.registry = path, kind, settings, registry
        self.metadata: dict[str, str] = {}

    @property
    def label(self) -> str:
        return self.path.name

    def planned_node(self) -> str | None:
        return self.source_kind.node if self.source_kind else None

    def fetch(self, progress: Progress) -> None:
        from zoo.converters.loaders.files import SOURCE_KINDS
        from zoo.hashing import sha256_json
        from zoo.safety import check_model_file

        kinds = ", ".join(k.name for k in SOURCE_KINDS)
        if not self.path.exists():
            raise errors.NotFoundError(f"{self.path} does not exist", hint=f"pass one of: {kinds}, or a model directory")
        if self.path.is_file():
            check_model_file(self.path)
        if self.source_kind is None:
            raise errors.UnsupportedFormatError(f"zoo cannot convert {self.path.name} yet",
                                                hint=f"convert one of: {kinds}, or a directory with config.json and weights")
        with progress.stage("hash", self.path.name):
            self.files = _source_files(self.path)
        digest = self.files[0].sha256 if len(self.files) == 1 else sha256_json({"files": [f.__dict__ for f in self.files]})
        self.node, self.revision, self.model_id = self.source_kind.node, digest, f"file/{digest[:16]}"
        self.root = self.path.parent if self.path.is_file() else self.path
        self.checked = True
        if self.node == "pt2":
            require_zoo_written(self.path, digest, self.registry)

    def open(self, progress: Progress) -> Opened:
        from zoo.converters.parity.sampling import signature_input_sets

        with progress.stage("load", f"{self.source_kind.name} {self.path.name}"):
            src = self.source_kind.open(self.path)
        self.metadata = src.metadata
        with progress.stage("inputs", "inferred from the signature and graph" if not self.input_request else "as given"):
            sets, notes = signature_input_sets(src.spec, src.metadata, model=src.graph, reference=src.reference,
                                               request=self.input_request)
        return Opened(src.model, src.reference, sets, [s["name"] for s in src.spec], src.outputs, dtype=src.dtype,
                      metadata=src.metadata, input_notes=notes, inputs_requested=True, onnx_model=src.graph)

    def tools(self) -> tuple[str, ...]:
        return {"onnx": ("onnx", "onnxruntime"), "tf": ("tensorflow",), "keras-model": ("keras", "tensorflow"),
                "pt2": ("torch",), "tflite": ("tensorflow",)}.get(self.node, ())

    def onnx_metadata(self) -> dict[str, str]:
        # what the source file said about itself (zoo.* of an earlier conversion) travels on
        return {**{k: v for k, v in self.metadata.items() if k.startswith("zoo.")},
                "zoo.converted_from": f"{self.path.name} sha256:{self.revision}"}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path.resolve()), "sha256": self.revision,
                "source": self.source_kind.name if self.source_kind else None}


def _source_files(path: Path) -> list[FileInfo]:
    """Path, sha256 and size of the source file (and of the external data files an ONNX file reads, which
    ``check_model_file`` has confined to its directory), or of every file of a source directory."""
    from zoo.hashing import sha256_file
    from zoo.storage.artifacts import hash_tree

    if path.is_file():
        names = [path.name]
        if path.suffix.lower() == ".onnx":
            from zoo.converters.edges.onnx_external import data_files

            names += data_files(path)
        return [FileInfo(name, sha256_file(path.parent / name), (path.parent / name).stat().st_size) for name in names]
    links = [p for p in path.rglob("*") if p.is_symlink()]
    if links:
        raise errors.UnsafeModelError(f"{path} holds symbolic links ({links[0].relative_to(path)})",
                                      hint="copy the model into a directory of plain files")
    return [FileInfo(f["path"], f["sha256"], f["size"]) for f in hash_tree(path)]


def require_zoo_written(path: Path, digest: str, registry: Registry) -> None:
    """Load a ``.pt2`` only if zoo published it (its sha256 is an artifact's in this registry):
    ``torch.export.load`` unpickles and compiles code from the archive."""
    import sqlalchemy as sa

    from zoo import db

    with registry.engine.connect() as conn:
        known = conn.execute(sa.select(db.artifacts.c.digest).where(db.artifacts.c.sha256 == digest).limit(1)).first()
    if known is None:
        raise errors.UnsafeModelError(
            f"{path.name} is a .pt2 file zoo did not write (its sha256 is not an artifact in {registry.settings.home}); "
            "torch.export.load can run code hidden in a .pt2, so zoo loads only its own",
            hint="convert the model's ONNX file or its source instead (zoo convert model.onnx --to pt2, "
                 "zoo pull NAME --format pt2)")
