"""``zoo convert PATH --to F``: the orchestrator for models the user holds as files.

A directory holding a Hugging Face or timm model (``config.json`` + weights) is
imported (as ``zoo import`` would) and pulled. An ``.onnx`` or ``.pt2`` file is
converted along the planned chain and checked end to end against the file
itself, on inputs made from its own signature. The result is published in the
same store, keyed by the file's digest. A ``.pt2`` is loaded only if zoo wrote
it (``torch.export.load`` can run code from an archive, see
``converters/pt2_archive.py``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.pipeline import PullOptions, PullResult, _index_artifact, _result, converter_versions, lookup, pull
from zoo.progress import Progress, quiet
from zoo.settings import Settings, get_settings
from zoo.store import ArtifactStore, copy_out

SOURCE_SUFFIXES = {".onnx": "onnx", ".pt2": "pt2"}


def convert_path(path: Path, options: PullOptions, *, settings: Settings | None = None,
                 progress: Progress | None = None, output: Path | None = None) -> PullResult:
    settings = settings or get_settings()
    progress = progress or quiet()
    path = path.expanduser()
    if path.is_dir():
        from registry.local_source import import_directory

        name = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().name).strip(".-") or "model"
        record = import_directory(path, name, settings)
        return pull(f"local:{record.name}", options, settings=settings, progress=progress, output=output)
    if not path.is_file():
        raise errors.NotFoundError(f"{path} does not exist", hint="pass an .onnx or .pt2 file or a model directory")
    source = SOURCE_SUFFIXES.get(path.suffix.lower())
    if source is None:
        raise errors.UnsupportedFormatError(f"zoo cannot convert {path.name} yet",
                                            hint="convert an .onnx or .pt2 file, or a directory with config.json and weights")
    from converters import graph

    chain = graph.plan(source, options.format)
    canonical = options.canonical()
    if source == "onnx":
        check_external_data(path)
    from zoo.hashing import sha256_file, sha256_json

    digest = sha256_file(path)
    model_id = f"file/{digest[:16]}"
    key = sha256_json({"source": digest, "converter": graph.chain_name(chain), "versions": converter_versions(),
                       "options": canonical})
    from registry.index import Registry

    registry = Registry(settings)
    if source == "pt2":
        require_zoo_written(path, digest, registry)
    store = ArtifactStore(settings.home)
    result = lookup(registry, store, key)
    if result is None:
        from filelock import FileLock

        store.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.locks / f"{key}.lock")):
            result = lookup(registry, store, key) or _convert_file(
                path, digest, model_id, chain, options, canonical, key, registry, store, progress)
    if output is not None:
        art = store.get(result.digest, verified=result.verified)
        assert art is not None
        result.path = str(copy_out(art, output))
    return result


def _convert_file(path: Path, digest: str, model_id: str, chain: list, options: PullOptions, canonical: dict[str, Any],
                  key: str, registry: Any, store: ArtifactStore, progress: Progress) -> PullResult:
    from converters import graph
    from converters.inputs import file_input_sets, file_signature
    from converters.parity import check_parity, requested_tolerance
    from converters.runners import artifact_runner

    spec, outputs, source_meta = file_signature(path)
    input_sets = file_input_sets(spec, source_meta)
    names = [s["name"] for s in spec]
    ctx = graph.EdgeContext(opset=canonical["opset"], exporter=options.exporter)
    with store.staging() as staging:
        current = graph.run_chain(chain, path, staging, ctx, progress)[-1]
        dtype = graph.chain_dtype(chain)
        with progress.stage("parity", f"{len(input_sets)} input sets at {dtype} tolerance"):
            tol = requested_tolerance(dtype, options.atol, options.rtol)
            report = check_parity(artifact_runner(path, names), artifact_runner(current, names), input_sets, tolerance=tol,
                                  output_names=outputs, versions=converter_versions())
        parity = report.to_dict()
        conversion = {"chain": graph.chain_name(chain), "details": ctx.info, "edges": graph.describe_edges(chain)}
        if current.suffix == ".onnx":
            _write_file_metadata(current, path, digest, source_meta, report)
        manifest = {"model": model_id, "revision": digest, "format": options.format, "key": key,
                    "converter": graph.chain_name(chain), "options": canonical, "conversion": conversion,
                    "parity": parity, "source_files": [{"path": path.name, "sha256": digest, "size": path.stat().st_size}],
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


def check_external_data(path: Path) -> None:
    """External tensor data must stay inside the model's directory, as plain files."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    root = path.parent.resolve()
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (root / location)
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts or target.is_symlink()
                or not target.resolve().is_relative_to(root)):
            raise errors.UnsafeModelError(f"{path.name}: tensor {tensor.name!r} points its data outside the model's directory ({location!r})",
                                          hint="keep external data files next to the .onnx file, as plain files")


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
