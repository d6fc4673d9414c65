"""``zoo convert PATH --to F``: the orchestrator for models the user holds as files.

A directory holding a Hugging Face or timm model (``config.json`` + weights) is
imported (as ``zoo import`` would) and pulled. A model file or SavedModel
directory (the kinds in ``converters/loaders/files.py``: ONNX, SavedModel,
``.keras``, ``.pt2``) is converted along the chain planned from its graph node
and checked end to end against the source itself, on inputs made from its own
signature. The result is published in the same store, keyed by the source's
digest. A ``.pt2`` is loaded only if zoo wrote it (``torch.export.load`` can run
code from an archive, see ``converters/loaders/pt2_archive.py``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.pipeline import (
    PullOptions,
    PullResult,
    _index_artifact,
    _result,
    converter_versions,
    lookup,
    pull,
)
from zoo.progress import Progress, quiet
from zoo.safety import check_model_file
from zoo.settings import Settings, get_settings
from zoo.storage.artifacts import ArtifactStore, copy_out


def convert_path(path: Path, options: PullOptions, *, settings: Settings | None = None,
                 progress: Progress | None = None, output: Path | None = None) -> PullResult:
    settings = settings or get_settings()
    progress = progress or quiet()
    path = path.expanduser()
    from zoo.archives import ARCHIVE_SUFFIXES
    from zoo.converters.loaders.files import SOURCE_KINDS, detect_source

    kind = detect_source(path)
    if kind is None and (path.is_dir() or path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)):
        from zoo.registry.local_source import import_path

        stem = path.resolve().name
        for suffix in ARCHIVE_SUFFIXES:
            stem = stem.removesuffix(suffix)
        name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).strip(".-") or "model"
        record = import_path(path, name, settings)
        return pull(f"local:{record.name}", options, settings=settings, progress=progress, output=output)
    kinds = ", ".join(k.name for k in SOURCE_KINDS)
    if not path.exists():
        raise errors.NotFoundError(f"{path} does not exist", hint=f"pass one of: {kinds}, or a model directory")
    if path.is_file():
        check_model_file(path)
    if kind is None:
        raise errors.UnsupportedFormatError(f"zoo cannot convert {path.name} yet",
                                            hint=f"convert one of: {kinds}, or a directory with config.json and weights")
    from zoo.converters import graph

    chain = graph.plan(kind.node, options.format)
    canonical = options.canonical()
    from zoo.hashing import sha256_json

    source_files = _source_files(path)
    digest = source_files[0]["sha256"] if path.is_file() else sha256_json({"files": source_files})
    model_id = f"file/{digest[:16]}"
    key = sha256_json({"source": digest, "converter": graph.chain_name(chain), "versions": converter_versions(),
                       "options": canonical})
    from zoo.registry.index import Registry

    registry = Registry(settings)
    if kind.node == "pt2":
        require_zoo_written(path, digest, registry)
    store = ArtifactStore(settings.home)
    result = lookup(registry, store, key)
    if result is None:
        from filelock import FileLock

        store.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.locks / f"{key}.lock")):
            result = lookup(registry, store, key) or _convert_file(
                path, kind, source_files, digest, model_id, chain, options, canonical, key, registry, store, progress)
    if output is not None:
        art = store.get(result.digest, verified=result.verified)
        assert art is not None
        result.path = str(copy_out(art, output))
    return result


def _source_files(path: Path) -> list[dict[str, Any]]:
    """Path, sha256 and size of the source file, or of every file of a source directory."""
    from zoo.hashing import sha256_file
    from zoo.storage.artifacts import hash_tree

    if path.is_file():
        return [{"path": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}]
    links = [p for p in path.rglob("*") if p.is_symlink()]
    if links:
        raise errors.UnsafeModelError(f"{path} holds symbolic links ({links[0].relative_to(path)})",
                                      hint="copy the model into a directory of plain files")
    return hash_tree(path)


def _convert_file(path: Path, kind: Any, source_files: list[dict[str, Any]], digest: str, model_id: str, chain: list,
                  options: PullOptions, canonical: dict[str, Any], key: str, registry: Any, store: ArtifactStore,
                  progress: Progress) -> PullResult:
    from zoo.converters import graph
    from zoo.converters.parity.check import check_parity, requested_tolerance
    from zoo.converters.parity.inputs import file_input_sets
    from zoo.converters.parity.runners import artifact_runner

    with progress.stage("load", f"{kind.name} {path.name}"):
        source = kind.open(path)
    input_sets = file_input_sets(source.spec, source.metadata)
    names = [s["name"] for s in source.spec]
    ctx = graph.EdgeContext(opset=canonical["opset"], exporter=options.exporter)
    with store.staging() as staging:
        current = graph.run_chain(chain, source.model, staging, ctx, progress)[-1]
        for note in ctx.notes:
            progress.note(note)
        dtype = max(graph.chain_dtype(chain), source.dtype, key=graph.DTYPE_ORDER.index)
        with progress.stage("parity", f"{len(input_sets)} input sets at {dtype} tolerance"):
            tol = requested_tolerance(dtype, options.atol, options.rtol)
            report = check_parity(source.reference, artifact_runner(current, names, source.outputs), input_sets,
                                  tolerance=tol, output_names=source.outputs, versions=converter_versions())
        parity = report.to_dict()
        conversion = {"chain": graph.chain_name(chain), "source": kind.name, "details": ctx.info,
                      "edges": graph.describe_edges(chain)}
        if current.suffix == ".onnx":
            _write_file_metadata(current, path, digest, source.metadata, report)
        manifest = {"model": model_id, "revision": digest, "format": options.format, "key": key,
                    "converter": graph.chain_name(chain), "options": canonical, "conversion": conversion,
                    "parity": parity, "source_files": source_files,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with progress.stage("publish"):
            art = store.publish(current.parent, current.name, manifest, verified=report.passed)
            _index_artifact(registry, key, art, manifest)
    result = _result(manifest, art, cached=False)
    if not report.passed and not options.allow_mismatch:
        raise errors.ParityError(
            f"parity check failed for {path.name} -> {options.format}: {report.summary_line()}",
            hint=f"the artifact is kept for inspection only, NOT verified: {art.path}; pass --allow-mismatch to accept it",
            model=model_id, quarantined=str(art.path), report=parity, worst=[asdict(m) for m in report.worst(3)])
    return result


def _write_file_metadata(target: Path, source: Path, digest: str, source_meta: dict[str, str], report: Any) -> None:
    """Carry zoo's metadata over from the source file and record this conversion."""
    import onnx

    from zoo import __version__

    model = onnx.load(str(target), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    props.update({k: v for k, v in source_meta.items() if k.startswith("zoo.")})
    props.update({
        "zoo.version": __version__,
        "zoo.converted_from": f"{source.name} sha256:{digest}",
        "zoo.parity": json.dumps({"passed": report.passed, "max_abs_diff": report.max_abs_diff,
                                  "atol": report.tolerance.atol, "rtol": report.tolerance.rtol,
                                  "inputs_sha256": report.inputs_sha256, "reference": "source file"}),
    })
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(target))


def require_zoo_written(path: Path, digest: str, registry: Any) -> None:
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
            hint="convert the model's ONNX file or its source instead (zoo convert model.onnx --to pt2, zoo pull NAME --format pt2)")
