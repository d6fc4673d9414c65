"""The one orchestrator: resolve -> fetch -> convert -> check parity -> publish.

The CLI calls ``pull``; the API and workers will call the same function. A
cached pull touches only the registry database, the Hugging Face cache and the
store: it imports neither torch, timm nor onnxruntime.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import __version__, errors, hooks, pullmemo
from zoo.progress import Progress, quiet
from zoo.registry.names import parse_name
from zoo.registry.records import FileInfo, ModelRecord
from zoo.settings import Settings, get_settings
from zoo.storage.artifacts import Artifact, ArtifactStore, copy_out
from zoo.versions import dist_version, dist_versions

if TYPE_CHECKING:
    from zoo.registry.index import Registry


@dataclass(frozen=True)
class PullOptions:
    format: str = "onnx"
    opset: int | None = None
    atol: float | None = None
    rtol: float | None = None
    exporter: str = "auto"  # "auto" (dynamo, then TorchScript), "dynamo", "torchscript"
    allow_mismatch: bool = False  # publish (unverified) and exit 0 when parity fails; not part of the cache key

    def canonical(self) -> dict[str, Any]:
        from zoo.converters.edges.torch_onnx import (
            check_opset,  # light: no torch import at module level
        )

        return {"format": self.format, "opset": check_opset(self.opset), "atol": self.atol, "rtol": self.rtol,
                "exporter": self.exporter}


@dataclass
class PullResult:
    model: str
    revision: str
    format: str
    path: str
    sha256: str
    size: int
    cached: bool
    verified: bool
    digest: str
    artifact_dir: str
    parity: dict[str, Any]
    conversion: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fetched:
    record: ModelRecord
    revision: str
    root: Path
    files: list[FileInfo]
    weights: list[str]
    weights_format: str
    checked: bool = False  # every file was hashed against its expected digest during this fetch


def pull(name: str, options: PullOptions | None = None, *, settings: Settings | None = None,
         progress: Progress | None = None, output: Path | None = None) -> PullResult:
    options = options or PullOptions()
    settings = settings or get_settings()
    progress = progress or quiet()
    from zoo.converters import graph

    graph.require_format(options.format)
    canonical = options.canonical()  # validates before any network or heavy work
    ref = parse_name(name)
    fp = pullmemo.fingerprint(name.strip(), ref.revision, canonical, converter_versions())
    fast = _recall(ref, fp, settings, output) if ref.source != "local" else None
    if fast is not None:
        return fast
    from zoo.registry.index import Registry

    registry = Registry(settings)
    with progress.stage("resolve", name):
        record = registry.resolve(ref)
    if record.input_spec:  # known before any download; a repo seen for the first time is described by its files
        graph.plan(source_node(record), options.format)
    with progress.stage("fetch", record.repo_id or record.id):
        fetched = fetch(record, ref.revision, registry, settings, progress)
    chain = graph.plan(source_node(fetched.record), options.format)
    key = cache_key(fetched, canonical, graph.chain_name(chain))
    store = ArtifactStore(settings.home)
    result = lookup(registry, store, key)
    if result is None:
        from filelock import FileLock

        store.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.locks / f"{key}.lock")):
            result = lookup(registry, store, key)  # another process may have finished it meanwhile
            if result is None:
                store.clean_stale()
                check_sources(fetched, settings, progress)
                result = convert(fetched, options, canonical, key, registry, store, progress)
    result.notes = progress.notes + result.notes
    if fetched.record.repo_id and result.verified:  # local and keras records have no repo to re-check
        pullmemo.remember(settings, fp, {"repo_id": fetched.record.repo_id, "commit": fetched.revision,
                                         "digest": result.digest})
    if output is not None:
        art = store.get(result.digest)
        assert art is not None
        result.path = str(copy_out(art, output))
    return result


def recall(name: str, options: PullOptions, settings: Settings) -> PullResult | None:
    """The verified answer of an identical earlier pull when its commit and files still hold,
    found without converting anything or importing a framework; None otherwise."""
    ref = parse_name(name)
    if ref.source == "local":
        return None
    fp = pullmemo.fingerprint(name.strip(), ref.revision, options.canonical(), converter_versions())
    return _recall(ref, fp, settings, None)


def _recall(ref: Any, fp: str, settings: Settings, output: Path | None) -> PullResult | None:
    """The answer of an identical earlier pull, if its commit and files still hold."""
    memo = pullmemo.recall(settings, fp)
    if not memo or pullmemo.current_commit(memo["repo_id"], ref.revision, settings) != memo["commit"]:
        return None
    store = ArtifactStore(settings.home)
    art = store.get(memo["digest"])
    if art is None or not store.quick_check(art):
        return None
    manifest = json.loads((art.path / "zoo.json").read_text())
    # Not the manifest's cache key: identical bytes published again under a new key (a
    # library upgrade that changes no output) keep the first publication's zoo.json.
    if manifest.get("revision") != memo["commit"]:
        return None
    result = _result(manifest, art, cached=True)
    if output is not None:
        result.path = str(copy_out(art, output))
    return result


def source_node(record: ModelRecord) -> str:
    """The graph node a record's model starts from."""
    return "keras-model" if record.library == "keras" else "torch"


def fetch(record: ModelRecord, revision: str | None, registry: Registry, settings: Settings,
          progress: Progress) -> Fetched:
    from zoo.registry.hf_source import (
        choose_files,
        describe,
        fetch_snapshot,
        file_infos,
    )

    if record.source == "keras":  # weights come through keras' own cache when the model is built
        version = dist_version("keras") or "none"
        return Fetched(record, f"keras-{version}-{record.input_spec[0]['shape'][1]}", settings.home, [], [], "keras")

    if record.source == "local":
        root = settings.home / "local" / record.name / str(record.revision)
        files = registry.revision_files(record.id, str(record.revision)) or []
        if not root.is_dir() or not files:
            raise errors.ModelNotFoundError(f"the files of {record.id} are missing from {root}",
                                            hint=f"import it again: zoo import DIR --name {record.name}")
        _names, weights, fmt = choose_files([f.path for f in files])
        return Fetched(record, str(record.revision), root, files, weights, fmt)
    if not record.repo_id:
        raise errors.UnsupportedError(
            f"{record.id}: timm publishes these weights only at a URL, not on the Hugging Face hub",
            hint="pick another tag of the architecture (zoo list ARCH)")
    snap = fetch_snapshot(record.repo_id, revision, settings, repo_filename=record.repo_filename,
                          progress=progress.downloads_visible, on_note=progress.note)
    if record.source == "hf":
        record = describe(record, snap.root, snap.files)
        record.license = snap.license or record.license
        registry.upsert(record)
    files = registry.revision_files(record.id, snap.commit)
    checked = files is None or {f.path for f in files} != set(snap.files)
    if checked:  # first sight of this revision: hash what was not downloaded (and verified) just now
        from zoo.registry.download import verify_files

        unknown = [f for f in snap.files if f not in snap.digests]
        digests = verify_files(snap.root, unknown, {}, _refetcher(record, snap.commit, settings, progress), record.id)
        files = file_infos(snap.root, snap.files, known={**snap.digests, **digests})
        registry.add_revision(record.id, snap.commit, files)
    hooks.pause_at("fetch.downloaded")
    return Fetched(record, snap.commit, snap.root, files, snap.weights, snap.weights_format, checked=checked)


def _refetcher(record: ModelRecord, commit: str, settings: Settings, progress: Progress) -> Any:
    """``(name, expected) -> (path, sha256)`` that downloads a corrupt cached file again, or None offline."""
    if settings.hf_offline or record.source in ("local", "keras") or not record.repo_id:
        return None
    from zoo.registry.download import download_file

    def refetch(name: str, expected: Any) -> tuple[Path, str]:
        progress.note(f"{name} of {record.repo_id} is corrupt in the Hugging Face cache; fetching it again")
        return download_file(record.repo_id, name, commit, settings, expected)

    return refetch


def check_sources(fetched: Fetched, settings: Settings, progress: Progress) -> None:
    """Before any loader reads them, every source file must still hash to the digest
    recorded when it was fetched (bit rot, a tampered cache); corrupt files of hub
    models are fetched again, others are an IntegrityError."""
    if fetched.checked or not fetched.files:
        return
    from zoo.registry.download import Expected, verify_files

    expected = {f.path: Expected(sha256=f.sha256, size=f.size) for f in fetched.files}
    verify_files(fetched.root, list(expected), expected, _refetcher(fetched.record, fetched.revision, settings, progress),
                 fetched.record.id)


def converter_versions() -> dict[str, str]:
    return {"zoo": __version__, **dist_versions(("torch", "onnx", "onnxscript", "onnxruntime", "timm", "transformers",
                                                  "tensorflow", "keras", "tf2onnx", "onnx2tf"))}


def cache_key(fetched: Fetched, canonical: dict[str, Any], converter: str) -> str:
    from zoo.hashing import sha256_json

    return sha256_json({
        "model": fetched.record.id, "revision": fetched.revision,
        "files": sorted((f.path, f.sha256) for f in fetched.files),
        "converter": converter, "versions": converter_versions(), "options": canonical,
    })


def lookup(registry: Registry, store: ArtifactStore, key: str) -> PullResult | None:
    """A verified artifact for ``key`` whose files are all present, or None."""
    import sqlalchemy as sa

    from zoo import db

    with registry.engine.connect() as conn:
        row = conn.execute(sa.select(db.artifacts).where((db.artifacts.c.key == key) & db.artifacts.c.verified)).mappings().first()
    if row is None:
        return None
    art = store.get(row["digest"])
    if art is None and registry.settings.storage == "s3":  # indexed by a worker elsewhere: bring it here
        from zoo.storage.s3 import fetch_artifact

        art = fetch_artifact(registry.settings, store, row["digest"])
    if art is None or not store.quick_check(art):
        with registry.engine.begin() as conn:  # stale index entry: convert again
            conn.execute(sa.delete(db.artifacts).where(db.artifacts.c.key == key))
        return None
    return _result(row["manifest"], art, cached=True)


def _result(manifest: dict[str, Any], art: Artifact, *, cached: bool) -> PullResult:
    entry = art.primary_entry()
    return PullResult(model=manifest["model"], revision=manifest["revision"], format=manifest["format"],
                      path=str(art.primary_path), sha256=entry["sha256"], size=entry["size"], cached=cached,
                      verified=art.verified, digest=art.digest, artifact_dir=str(art.path),
                      parity=manifest["parity"], conversion=manifest.get("conversion", {}))


def convert(fetched: Fetched, options: PullOptions, canonical: dict[str, Any], key: str, registry: Registry,
            store: ArtifactStore, progress: Progress) -> PullResult:
    """The heavy path: build, run the planned chain of edges, check parity end to
    end against the source model, publish (verified, or quarantined)."""
    from zoo.converters import graph
    from zoo.converters.loaders import torch_models as loading
    from zoo.converters.parity.check import (
        check_parity,
        default_tolerance,
        requested_tolerance,
    )
    from zoo.converters.parity.inputs import parity_input_sets
    from zoo.converters.parity.runners import (
        artifact_runner,
        torch_inputs,
        torch_runner,
    )

    record = fetched.record
    node = source_node(record)
    chain = graph.plan(node, options.format)
    with progress.stage("load", f"{record.library} {record.arch}"):
        if node == "keras-model":
            from zoo.converters.loaders.keras_models import (
                build_keras,
                load_keras_snapshot,
            )
            from zoo.converters.parity.runners import keras_runner

            tm = (build_keras(record, progress.note) if record.source == "keras"
                  else load_keras_snapshot(fetched.root, fetched.weights))
            reference = keras_runner(tm.model, tm.input_names)
        else:
            tm = loading.build_model(record, fetched.root, fetched.weights, fetched.weights_format, progress.note)
            reference = torch_runner(tm)
        input_sets = parity_input_sets(record, tm.tokenizer)
    ctx = graph.EdgeContext(opset=canonical["opset"], exporter=options.exporter,
                            example=torch_inputs(input_sets[0].feeds, tm.input_names) if node == "torch" else (),
                            seq_max=record.preprocessing.get("max_length") if tm.tokenizer is not None else None)
    dtype = graph.chain_dtype(chain)
    tol = requested_tolerance(dtype, options.atol, options.rtol)

    def run_and_check(into: Path) -> tuple[list[Path], Any]:
        hops = graph.run_chain(chain, tm, into, ctx, progress)
        hooks.pause_at("convert.exported")
        for note in ctx.notes:
            progress.note(note)
        ctx.notes.clear()
        with progress.stage("parity", f"{len(input_sets)} input sets at {dtype} tolerance"):
            report = check_parity(reference, artifact_runner(hops[-1], tm.input_names, tm.output_names), input_sets,
                                  output_names=tm.output_names, tolerance=tol,
                                  classifier_outputs=tm.classifier_outputs, versions=converter_versions())
        return hops, report

    with store.staging() as staging:
        hops, report = run_and_check(staging)
        exported = ctx.info.get("torch->onnx", {})
        if not report.passed and options.exporter == "auto" and exported.get("exporter") == "torchscript":
            # TorchScript traces one shape; parity on other shapes is what catches what it baked in
            first = report.summary_line()
            progress.note(f"the TorchScript export failed parity ({first}); exporting with dynamo")
            ctx.exporter = "dynamo"
            (staging / "dynamo").mkdir()
            hops, report = run_and_check(staging / "dynamo")
            ctx.info["torch->onnx"]["fallback_reason"] = f"torchscript: failed parity: {first}"
        current = hops[-1]
        parity = report.to_dict()
        for warning in report.warnings:
            progress.note(f"parity: {warning}")
        if not report.passed and chain[0].source == "torch" and chain[0].target == "onnx":
            with progress.stage("locate", "the first diverging layer"):
                parity["divergence"] = _divergence(tm, hops[0], input_sets[0].feeds, default_tolerance(dtype), chain)
        conversion = {**ctx.info.get("torch->onnx", ctx.info.get("keras-model->onnx", {})), "chain": graph.chain_name(chain),
                      "edges": graph.describe_edges(chain), "details": ctx.info}
        if current.suffix == ".onnx":
            _write_onnx_metadata(current, fetched, tm, conversion, report)
        _copy_sidecar_files(fetched, current.parent)
        manifest = {"model": record.id, "revision": fetched.revision, "format": options.format, "key": key,
                    "converter": graph.chain_name(chain), "options": canonical, "conversion": conversion,
                    "parity": parity, "source_files": [f.__dict__ for f in fetched.files], "record": record.to_dict(),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with progress.stage("publish"):
            art = store.publish(current.parent, current.name, manifest, verified=report.passed)
            _index_artifact(registry, key, art, manifest)
    result = _result(manifest, art, cached=False)
    if not report.passed and options.allow_mismatch:
        progress.note(f"parity FAILED but --allow-mismatch was given: {report.summary_line()}; "
                      f"the artifact is NOT verified and lives in {art.path}")
    elif not report.passed:
        raise errors.ParityError(
            f"parity check failed for {record.id}: {report.summary_line()}",
            hint=f"the artifact is kept for inspection only, NOT verified: {art.path}; "
                 "loosen --atol/--rtol only if the differences are acceptable, or pass --allow-mismatch",
            model=record.id, quarantined=str(art.path), report=parity, worst=[asdict(m) for m in report.worst(3)],
            divergence=parity.get("divergence"),
        )
    return result


def _divergence(tm: Any, onnx_path: Path, feeds: dict[str, Any], tol: Any, chain: list) -> dict[str, Any]:
    """Best effort: a diagnostic must never turn a parity failure into a crash."""
    from zoo.converters.parity.divergence import locate_divergence

    try:
        found = locate_divergence(tm, onnx_path, feeds, atol=tol.atol, rtol=tol.rtol)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"could not locate: {type(exc).__name__}: {str(exc)[:200]}"}
    if found is None:
        later = ", ".join(f"{e.source}->{e.target}" for e in chain[1:])
        return {"module": None, "note": "every layer of the torch->onnx export matches"
                + (f"; the difference comes from {later}" if later else "; it appears only in the final outputs")}
    return found


def _write_onnx_metadata(path: Path, fetched: Fetched, tm: Any, conversion: dict[str, Any], report: Any) -> None:
    from zoo.converters.edges.torch_onnx import write_metadata

    record = fetched.record
    props = {
        "zoo.version": __version__,
        "zoo.source": record.id,
        "zoo.source_revision": fetched.revision,
        "zoo.task": record.task or "",
        "zoo.input_spec": json.dumps(record.input_spec),
        "zoo.preprocessing": json.dumps(record.preprocessing),
        "zoo.exporter": conversion["exporter"],
        "zoo.parity": json.dumps({"passed": report.passed, "max_abs_diff": report.max_abs_diff,
                                  "atol": report.tolerance.atol, "rtol": report.tolerance.rtol,
                                  "inputs_sha256": report.inputs_sha256,
                                  "outputs": {k: {"max_abs_diff": v.get("max_abs_diff"), "passed": v.get("passed")}
                                              for k, v in report.outputs.items()}}),
        "zoo.license": record.license or "",
    }
    if tm.labels:
        props["zoo.labels"] = json.dumps(list(tm.labels))
    write_metadata(path, props)


def _copy_sidecar_files(fetched: Fetched, staging: Path) -> None:
    """Transformers artifacts carry their config and tokenizer files."""
    if fetched.record.library != "transformers":
        return
    from zoo.registry.hf_source import METADATA_FILES

    for f in fetched.files:
        if f.path in METADATA_FILES:
            shutil.copyfile(fetched.root / f.path, staging / f.path)


def _index_artifact(registry: Registry, key: str, art: Artifact, manifest: dict[str, Any]) -> None:
    from zoo import db

    entry = art.primary_entry()
    row = {"key": key, "digest": art.digest, "model_id": manifest["model"], "revision": manifest["revision"],
           "format": manifest["format"], "primary_file": art.primary, "sha256": entry["sha256"],
           "size": entry["size"], "verified": art.verified, "manifest": {**manifest, "digest": art.digest}}
    with registry.engine.begin() as conn:
        db.upsert(conn, db.artifacts, [row])
