"""``zoo convert PATH --to F``: the orchestrator for models the user holds as files.

A directory holding a Hugging Face or timm model (``config.json`` + weights) is
imported (as ``zoo import`` would) and pulled. An ``.onnx`` file is converted
along the planned chain and checked end to end against the file itself, on
inputs made from its own signature. The result is published in the same store,
keyed by the file's digest.
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
from zoo.safety import check_model_file
from zoo.settings import Settings, get_settings
from zoo.store import ArtifactStore, copy_out

SOURCE_SUFFIXES = {".onnx": "onnx"}


def convert_path(path: Path, options: PullOptions, *, settings: Settings | None = None,
                 progress: Progress | None = None, output: Path | None = None) -> PullResult:
    settings = settings or get_settings()
    progress = progress or quiet()
    path = path.expanduser()
    from zoo.archives import ARCHIVE_SUFFIXES

    if path.is_dir() or path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        from registry.local_source import import_path

        stem = path.resolve().name
        for suffix in ARCHIVE_SUFFIXES:
            stem = stem.removesuffix(suffix)
        name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).strip(".-") or "model"
        record = import_path(path, name, settings)
        return pull(f"local:{record.name}", options, settings=settings, progress=progress, output=output)
    if not path.is_file():
        raise errors.NotFoundError(f"{path} does not exist", hint="pass an .onnx file or a model directory")
    check_model_file(path)
    source = SOURCE_SUFFIXES.get(path.suffix.lower())
    if source is None:
        raise errors.UnsupportedFormatError(f"zoo cannot convert {path.name} yet",
                                            hint="convert an .onnx file, or a directory with config.json and weights")
    from converters import graph

    chain = graph.plan(source, options.format)
    canonical = options.canonical()
    from zoo.hashing import sha256_file, sha256_json

    digest = sha256_file(path)
    model_id = f"file/{digest[:16]}"
    key = sha256_json({"source": digest, "converter": graph.chain_name(chain), "versions": converter_versions(),
                       "options": canonical})
    from registry.index import Registry

    registry = Registry(settings)
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
    from converters.inputs import file_input_sets, onnx_signature
    from converters.parity import check_parity, requested_tolerance
    from converters.runners import artifact_runner, onnx_runner

    spec, outputs, source_meta = onnx_signature(path)
    input_sets = file_input_sets(spec, source_meta)
    names = [s["name"] for s in spec]
    ctx = graph.EdgeContext(opset=canonical["opset"], exporter=options.exporter)
    with store.staging() as staging:
        current = graph.run_chain(chain, path, staging, ctx, progress)[-1]
        dtype = graph.chain_dtype(chain)
        with progress.stage("parity", f"{len(input_sets)} input sets at {dtype} tolerance"):
            tol = requested_tolerance(dtype, options.atol, options.rtol)
            report = check_parity(onnx_runner(path), artifact_runner(current, names), input_sets, tolerance=tol,
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
