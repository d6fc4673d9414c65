"""The one orchestrator: fetch -> plan -> cache lookup -> verify -> open -> convert -> check parity -> publish.

Every request goes through ``run``: ``pull`` (a model name: ``zoo pull``, the API's jobs, the workers,
``zoo parity --matrix``) and ``convert_path`` (a file or directory the user holds: ``zoo convert``) only
make the :class:`zoo.sources.Source` it starts from. A cached pull touches only the registry database,
the Hugging Face cache and the store: it imports neither torch, timm nor onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import __version__, errors, hooks, pullmemo
from zoo.ladder import Rung, climb, locate_lost
from zoo.options import Options
from zoo.progress import Progress, quiet
from zoo.registry.names import parse_name
from zoo.settings import Settings, get_settings
from zoo.storage.artifacts import Artifact, ArtifactStore, copy_out
from zoo.versions import dist_versions

if TYPE_CHECKING:
    from zoo.registry.index import Registry
    from zoo.sources import Opened, Source

# Every package that can take part in a conversion; a request's cache key holds only the versions of
# those its source and chain use (``key_versions``).
KNOWN_TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "timm", "transformers", "tensorflow", "tf-keras",
               "keras", "tf2onnx", "onnx2tf", "ai-edge-litert", "numpy", "litert-torch", "litert-converter",
               "ai-edge-quantizer", "torchax", "jax", "jaxlib", "jax2onnx", "flax")


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


# --- entry points ----------------------------------------------------------------------------------------
def pull(name: str, options: Options | None = None, *, settings: Settings | None = None,
         progress: Progress | None = None, output: Path | None = None) -> PullResult:
    """A model by name, converted and checked (or the verified artifact of an identical earlier request)."""
    options, settings, progress = _defaults(options, settings, progress)
    ref = parse_name(name)
    fp = pullmemo.fingerprint(name.strip(), ref.revision, options.canonical(), converter_versions())
    fast = _recall(ref, fp, settings, output)
    if fast is not None:
        return fast
    from zoo.registry.index import Registry
    from zoo.sources import source_for_name

    registry = Registry(settings)
    source = source_for_name(name, settings, registry, progress)
    return run(source, options, registry=registry, settings=settings, progress=progress, output=output, memo_key=fp)


def convert_path(path: Path, options: Options | None = None, *, settings: Settings | None = None,
                 progress: Progress | None = None, output: Path | None = None) -> PullResult:
    """A model file or directory the user holds (``zoo convert PATH --to F``)."""
    options, settings, progress = _defaults(options, settings, progress)
    from zoo.registry.index import Registry
    from zoo.sources import source_for_path

    registry = Registry(settings)
    source = source_for_path(Path(path), settings, registry, progress)
    return run(source, options, registry=registry, settings=settings, progress=progress, output=output)


def convert_jax(fn: Any, params: Any, example: Any, *, format: str = "onnx", name: str | None = None,
                input_names: list[str] | None = None, output_names: list[str] | None = None,
                dynamic_batch: bool = True, options: Options | None = None, settings: Settings | None = None,
                progress: Progress | None = None, output: Path | None = None) -> PullResult:
    """A JAX function converted and checked: ``fn(params, *example)`` is traced with jax2onnx (parameters
    closed over as constants) and the result checked against ``jax.jit(fn)(params, *inputs)`` on the
    example and on seeded random batches of its shapes (the first axis dynamic unless ``dynamic_batch``
    is False); from ONNX on through the graph to ``format``. ``params``: any pytree of arrays (a Flax
    NNX ``nnx.split`` state, Linen variables, a dict). Returns the verified artifact (``PullResult``), or
    raises ``ParityError`` (exit 6) as ``pull`` does."""
    from zoo.converters.loaders.flax_models import JaxFunction, spec_from_example
    from zoo.registry.index import Registry
    from zoo.sources.jax_fn import JaxFunctionSource

    if not callable(fn):
        raise errors.UsageError(f"convert_jax takes a function of (params, *inputs), not {type(fn).__name__}")
    options = replace(options or Options(), format=format)
    options, settings, progress = _defaults(options, settings, progress)
    examples = list(example) if isinstance(example, (list, tuple)) else [example]
    jf = JaxFunction(fn, params, spec_from_example(examples, input_names, dynamic_batch), list(output_names or []),
                     label=name or getattr(fn, "__qualname__", "jax function"))
    source = JaxFunctionSource(jf, examples, name)
    return run(source, options, registry=Registry(settings), settings=settings, progress=progress, output=output)


def _defaults(options: Options | None, settings: Settings | None,
              progress: Progress | None) -> tuple[Options, Settings, Progress]:
    from zoo.converters import graph

    options = (options or Options()).validated()
    graph.require_format(options.format)  # before any network or heavy work
    return options, settings or get_settings(), progress or quiet()


def recall(name: str, options: Options, settings: Settings) -> PullResult | None:
    """The verified answer of an identical earlier pull when its commit and files still hold,
    found without converting anything or importing a framework; None otherwise."""
    ref = parse_name(name)
    fp = pullmemo.fingerprint(name.strip(), ref.revision, options.canonical(), converter_versions())
    return _recall(ref, fp, settings, None)


def _recall(ref: Any, fp: str, settings: Settings, output: Path | None) -> PullResult | None:
    """The answer of an identical earlier pull, if its commit and files still hold."""
    memo = pullmemo.recall(settings, fp)
    if not memo or pullmemo.current_revision(memo, ref.revision, settings) != memo["commit"]:
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
    result = result_of(manifest, art, cached=True)
    if output is not None:
        result.path = str(copy_out(art, output))
    return result


# --- the pipeline ----------------------------------------------------------------------------------------
def run(source: Source, options: Options, *, registry: Registry, settings: Settings, progress: Progress,
        output: Path | None = None, memo_key: str | None = None) -> PullResult:
    """Fetch ``source``, and answer from the cache or convert, check and publish, once per cache key
    however many processes ask at the same time."""
    from zoo.converters import graph

    canonical = options.canonical()
    node = source.planned_node()
    if node:  # known before any download
        graph.plan(node, options.format)
    source.task = options.task  # --task: the head to export, instead of the one the repo declares
    with progress.stage("fetch", source.label):
        source.fetch(progress)
    require_format_of(source, options.format)
    chains = graph.routes(source.node, options.format)  # in the order tried: see graph.routes
    if _is_pair(source):  # an encoder-decoder: only the routes whose every edge converts both files
        chains = graph.pair_routes(chains)
    key = cache_key(source, canonical, chains)
    store = ArtifactStore(settings.home)
    result = lookup(registry, store, key)
    if result is None:
        from filelock import FileLock

        store.locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.locks / f"{key}.lock")):
            result = lookup(registry, store, key)  # another process may have finished it meanwhile
            if result is None:
                store.clean_stale()
                source.verify(progress)
                result = convert(source, chains, options, key, registry, store, progress)
    result.notes = progress.notes + result.notes
    memo = source.memo() if memo_key else None
    if memo and result.verified:
        pullmemo.remember(settings, memo_key, {**memo, "digest": result.digest})
    if output is not None:
        art = store.get(result.digest, verified=result.verified)
        if art is None:
            raise errors.IntegrityError(f"artifact {result.digest[:16]} vanished from the store while being copied",
                                        hint="run the same command again")
        result.path = str(copy_out(art, output))
    return result


def require_format_of(source: Source, fmt: str) -> None:
    """An encoder-decoder (two graphs, ``record.extra["io"]["files"]``) converts only to the formats that keep
    both graphs: any other is refused before anything is opened (exit 5)."""
    from zoo.converters import graph
    from zoo.converters.tasks.seq2seq import FORMATS

    if _is_pair(source) and (graph.canonical_format(fmt) not in FORMATS
                             or not graph.pair_routes(graph.routes(source.node, graph.canonical_format(fmt)))):
        raise errors.UnsupportedError(
            f"{source.label}: an encoder-decoder model ({source.record.task}) is two graphs, an encoder and a "
            f"decoder with its cache; no route to --format {fmt} converts and checks them together",
            hint=f"formats that work for it: {', '.join(FORMATS)}", model=source.model_id)


def _is_pair(source: Source) -> bool:
    return source.record is not None and bool((source.record.extra.get("io") or {}).get("files"))


def _refuse_one_of_a_pair(source: Source, opened: Opened) -> None:
    """``zoo convert`` of one file of an encoder-decoder artifact (its ``zoo.io`` names both): the file alone
    cannot be checked by generation, so it is refused (exit 5) rather than published half-checked."""
    try:
        io = json.loads(opened.metadata.get("zoo.io") or "{}")
    except ValueError:
        return
    if isinstance(io, dict) and isinstance(io.get("files"), dict) and len(io["files"]) > 1:
        model = opened.metadata.get("zoo.source") or "MODEL"
        raise errors.UnsupportedError(
            f"{source.label} is one graph of an encoder-decoder ({', '.join(map(str, io['files'].values()))}): "
            "zoo checks the pair together, by generation, and cannot convert one file of it",
            hint=f"pull the model as a whole: zoo pull {model} --format onnx", model=source.model_id)


def converter_versions() -> dict[str, str]:
    """zoo's version and every installed tool's: what the fast path of a repeated pull keys on."""
    return {"zoo": __version__, **dist_versions(KNOWN_TOOLS)}


def key_versions(source: Source, chains: list) -> dict[str, str]:
    """zoo's version and those of the tools this source and its routes (chains) use, and no others: a worker
    with other extras, or an unrelated upgrade, shares the same artifacts."""
    from zoo.converters import graph

    used = {t for chain in _as_routes(chains) for t in graph.chain_tools(chain)}
    tools = sorted(set(source.tools()) | used | {"numpy"})
    return {"zoo": __version__, **dist_versions(tuple(tools))}


def _as_routes(chains: list) -> list[list]:
    """A list of routes (chains), from one chain or several."""
    return [chains] if chains and not isinstance(chains[0], list) else chains


def cache_key(source: Source, canonical: dict[str, Any], chains: list) -> str:
    """The sha256 of everything that decides an artifact: the source's identity and the bytes of its
    files, the chain of converters, their versions and the options."""
    from zoo.converters import graph
    from zoo.hashing import sha256_json

    return sha256_json({
        "model": source.model_id, "revision": source.revision,
        "files": sorted((f.path, f.sha256) for f in source.files),
        "converter": graph.routes_name(_as_routes(chains)), "versions": key_versions(source, chains), "options": canonical,
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
    return result_of(row["manifest"], art, cached=True)


def result_of(manifest: dict[str, Any], art: Artifact, *, cached: bool) -> PullResult:
    entry = art.primary_entry()
    return PullResult(model=manifest["model"], revision=manifest["revision"], format=manifest["format"],
                      path=str(art.primary_path), sha256=entry["sha256"], size=entry["size"], cached=cached,
                      verified=art.verified, digest=art.digest, artifact_dir=str(art.path),
                      parity=manifest["parity"], conversion=manifest.get("conversion", {}))


def index_artifact(registry: Registry, key: str, art: Artifact, manifest: dict[str, Any]) -> None:
    """Record a published artifact in the registry's artifact table (the cache index)."""
    from zoo import db

    entry = art.primary_entry()
    row = {"key": key, "digest": art.digest, "model_id": manifest["model"], "revision": manifest["revision"],
           "format": manifest["format"], "primary_file": art.primary, "sha256": entry["sha256"],
           "size": entry["size"], "verified": art.verified, "manifest": {**manifest, "digest": art.digest}}
    with registry.engine.begin() as conn:
        db.upsert(conn, db.artifacts, [row])


# --- the heavy path --------------------------------------------------------------------------------------
@dataclass
class Made:
    """What the heavy part leaves in staging for publishing: the result file, its parity, how it was made."""

    current: Path
    report: Any  # ParityReport
    parity: dict[str, Any]
    conversion: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"current": str(self.current), "report": self.report.to_dict(), "parity": self.parity,
                "conversion": self.conversion}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Made:
        from zoo.converters.parity.report import ParityReport

        return cls(Path(d["current"]), ParityReport.from_dict(d["report"]), d["parity"], d["conversion"])


def convert(source: Source, chains: list, options: Options, key: str, registry: Registry, store: ArtifactStore,
            progress: Progress) -> PullResult:
    """Open the source, run its routes (chains of edges) in order until one passes parity end to end against
    the source itself, publish (verified, or quarantined: the first route that produced a file) and index.
    ``conversion.routes`` in zoo.json says which route won and why each other lost. A source whose loading
    or calling runs the model's own code (a SavedModel) does everything up to publishing in a confined
    child (``zoo.sandbox``), which can write only into the staging directory."""

    canonical = options.canonical()
    source.input_request = options.input_request()
    with store.staging() as staging:
        if source.runs_model_code:
            from zoo.sandbox import run_confined

            made = Made.from_json(run_confined(
                lambda walls: make(source, chains, options, staging, progress, sandbox=walls).to_json(),
                staging, what=f"the SavedModel {source.label}"))
        else:
            made = make(source, chains, options, staging, progress)
        current, report, parity, conversion = made.current, made.report, made.parity, made.conversion
        chain_name = conversion["chain"]
        manifest = {"model": source.model_id, "revision": source.revision, "format": options.format, "key": key,
                    "converter": chain_name, "options": canonical, "conversion": conversion,
                    "parity": parity, "source": source.describe(), "source_files": [f.__dict__ for f in source.files],
                    "record": _record_of(source, conversion),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with progress.stage("publish"):
            art = store.publish(current.parent, current.name, manifest, verified=report.passed)
            index_artifact(registry, key, art, manifest)
    result = result_of(manifest, art, cached=False)
    if not report.passed and options.allow_mismatch:
        progress.note(f"parity FAILED but --allow-mismatch was given: {report.summary_line()}; "
                      f"the artifact is NOT verified and lives in {art.path}")
    elif not report.passed:
        raise errors.ParityError(
            f"parity check failed for {source.label} -> {options.format}: {report.summary_line()}",
            hint=f"the artifact is kept for inspection only, NOT verified: {art.path}; "
                 "loosen --atol/--rtol only if the differences are acceptable, or pass --allow-mismatch",
            model=source.model_id, quarantined=str(art.path), report=parity, worst=[asdict(m) for m in report.worst(3)],
            divergence=parity.get("divergence"),
        )
    return result


def _record_of(source: Source, conversion: dict[str, Any]) -> dict[str, Any] | None:
    """The source's record for zoo.json; an encoder-decoder's I/O contract names the files of the format made
    (``encoder.pt2``, one SavedModel's two signatures, ...), not the ONNX pair's."""
    if source.record is None:
        return None
    record = source.record.to_dict()
    io = (record.get("extra") or {}).get("io") or {}
    if io.get("files") and conversion.get("files"):
        record["extra"]["io"] = {**io, "files": dict(conversion["files"])}
        if conversion.get("signatures_of"):
            record["extra"]["io"]["signatures"] = dict(conversion["signatures_of"])
    return record


def make(source: Source, chains: list, options: Options, staging: Path, progress: Progress, *,
         sandbox: list[str] | None = None) -> Made:
    """The heavy part, in ``staging``: open the source, run it on the inputs, try the routes (each with its
    TorchScript -> dynamo re-export), locate a divergence, write ONNX metadata. ``sandbox``: the walls of
    the confined process this runs in, recorded in the conversion's details. What ``_make`` starts beside the
    conversion (a forked reference child and its folder) is stopped and removed before anything is published."""
    with contextlib.ExitStack() as cleanup:
        return _make(source, chains, options, staging, progress, cleanup, sandbox=sandbox)


def _make(source: Source, chains: list, options: Options, staging: Path, progress: Progress,
          cleanup: contextlib.ExitStack, *, sandbox: list[str] | None = None) -> Made:
    from zoo.converters import graph
    from zoo.converters.parity.check import check_parity, requested_tolerance
    from zoo.converters.parity.inputs import apply_input_request
    from zoo.converters.parity.locate import locate
    from zoo.converters.parity.reference import run_source
    from zoo.converters.parity.runners import artifact_runner, torch_inputs
    from zoo.converters.parity.static_sets import export_set, static_sets, unchecked_samples

    chains = _as_routes(chains)
    opened = source.open(progress)
    _refuse_one_of_a_pair(source, opened)
    task = source.record.task if source.record else (opened.metadata or {}).get("zoo.task")
    for chain in chains:  # an edge for some tasks only (onnx-int4: decoders) refuses before any conversion
        graph.require_tasks(chain, task)
    apply_input_request(opened, source.input_request, source.record)
    with progress.stage("source", f"running {source.label} on {len(opened.input_sets)} input sets"):
        # before any converter: a source that fails on the inputs is the inputs' fault, not a conversion's
        reference_outputs = run_source(opened.reference, opened.input_sets, label=source.label,
                                       notes=opened.input_notes, model=opened.onnx_model)
    _fork_references(opened, task_check(source.record), staging / ".zoo-reference", cleanup)
    canonical = options.canonical()
    versions = key_versions(source, chains)

    def run_and_check(chain: list, ctx: Any, into: Path, dtype: str) -> tuple[list[Path], Any, list]:
        hops = graph.run_chain(chain, opened.model, into, ctx, progress)
        hooks.pause_at("convert.exported")
        for note in ctx.notes:
            progress.note(note)
        ctx.notes.clear()
        sets, skipped, rebatched = static_sets(ctx, opened.input_sets, opened.input_names)
        with progress.stage("parity", f"{len(sets)} input sets at {dtype} tolerance"):
            candidate = artifact_runner(hops[-1], opened.input_names, opened.output_names)
            report = check_parity(opened.reference, candidate, sets, output_names=opened.output_names,
                                  tolerance=requested_tolerance(dtype, options.atol, options.rtol),
                                  classifier_outputs=opened.classifier_outputs, versions=versions,
                                  reference_outputs=reference_outputs, precision=dtype, require_samples=dtype != "float32",
                                  task=task_check(source.record), input_notes=opened.input_notes,
                                  metadata=opened.metadata)
        if rebatched:
            report.warnings.append(f"static shapes: {', '.join(rebatched)} re-batched to the exported batch and checked a "
                                   "chunk at a time")
        if skipped:
            report.warnings.append(f"static shapes: parity checked on the {len(sets)} input sets of the exported shape; "
                                   f"not on {', '.join(skipped)}")
        unchecked_samples(report, opened.input_sets, sets)
        return hops, report, sets

    def try_rung(i: int, chain: list, rung: str) -> Rung:
        into = staging if len(rungs) == 1 else staging / f"rung-{i}"
        into.mkdir(exist_ok=True)
        ctx = graph.EdgeContext(opset=canonical["opset"], exporter=options.exporter, seq_max=opened.seq_max,
                                example=torch_inputs(export_set(opened.input_sets, opened.input_names, rung).feeds,
                                                     opened.input_names)
                                if source.node == "torch" else (), static_shapes=rung == "static shapes",
                                task=task, external_data_bytes=options.external_data_above)
        dtype = max(graph.chain_dtype(chain), opened.dtype, key=graph.DTYPE_ORDER.index)
        hops, report, sets = run_and_check(chain, ctx, into, dtype)
        exported = ctx.info.get("torch->onnx", {})
        if not report.passed and options.exporter == "auto" and exported.get("exporter") == "torchscript":
            # TorchScript traces one shape; parity on other shapes is what catches what it baked in
            first = report.summary_line()
            progress.note(f"the TorchScript export failed parity ({first}); exporting with dynamo")
            ctx.exporter = "dynamo"
            (into / "dynamo").mkdir()
            hops, report, sets = run_and_check(chain, ctx, into / "dynamo", dtype)
            ctx.info["torch->onnx"]["fallback_reason"] = f"torchscript: failed parity: {first}"
        return Rung(chain, ctx, hops, report, dtype, sets)

    def locate_rung(rung: Rung) -> dict[str, Any] | None:  # on the set that failed (parity/locate.py)
        return locate(rung.report, [(e.source, e.target) for e in rung.chain], rung.hops, rung.sets,
                      opened.input_names, opened.torch_model, rung.report.tolerance,
                      opened.model if isinstance(opened.model, Path) else None, output_names=opened.output_names)

    rungs = graph.ladder(chains)
    if _is_pair(source):  # an encoder-decoder's decoder cache grows each step: no static-shapes rung (tflite's is static)
        rungs = [(c, rung) for c, rung in rungs if rung != "static shapes"]
    kept, attempts, lost = climb(rungs, try_rung, options.format, progress)
    chain, ctx, hops, report = kept.chain, kept.ctx, kept.hops, kept.report
    current = hops[-1]
    parity = report.to_dict()
    for warning in report.warnings:
        progress.note(f"parity: {warning}")
    if not report.passed:  # every rung failed: each one that failed parity is located, in the order tried
        with progress.stage("locate", "where it first diverges"):
            parity["divergence"] = locate_lost(lost, kept, locate_rung, progress)
    first_edge = f"{chain[0].source}->{chain[0].target}"
    conversion = {**ctx.info.get(first_edge, {}), "chain": graph.chain_name(chain), "source": source.kind,
                  "edges": graph.describe_edges(chain), "details": ctx.info}
    last = ctx.info.get(f"{chain[-1].source}->{chain[-1].target}") or {}
    if isinstance(last, dict) and last.get("files"):  # an encoder-decoder's files in the target format
        conversion["files"] = last["files"]
        if last.get("signatures_of"):
            conversion["signatures_of"] = last["signatures_of"]
    if len(rungs) > 1:
        conversion["routes"] = attempts  # in the order tried (graph.routes): which won, why the others lost
    if current.suffix == ".onnx":
        write_onnx_metadata(current, source, opened, conversion, report)
        for beside in (conversion.get("files") or {}).values():  # an encoder-decoder's encoder.onnx
            if beside != current.name:
                write_onnx_metadata(current.parent / beside, source, opened, conversion, report)
    for rel in source.sidecar_files():
        shutil.copyfile(source.root / rel, current.parent / rel)
    io = (source.record.extra.get("io") or {}) if source.record is not None else {}
    if current.suffix == ".onnx" and io.get("cache", {}).get("num_key_value_heads") is not None:
        conversion["genai"] = _genai_config(current, io, ctx)
    if sandbox is not None:
        conversion["sandbox"] = sandbox
    return Made(current, report, parity, conversion)


def _fork_references(opened: Opened, check: str | None, folder: Path, cleanup: contextlib.ExitStack) -> None:
    """A decoder's generate() references, computed in a forked child while the export runs (parity/forked.py)."""
    from zoo.converters.parity.tasks import TASK_ALIASES
    from zoo.converters.tasks.text_generation import fork_references

    if TASK_ALIASES.get((check or "").lower()) != "text-generation":
        return
    forked = fork_references(opened.reference, opened.input_sets, folder)
    if forked is not None:
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        cleanup.callback(forked.close)


def _genai_config(current: Path, io: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A text-generation file's ``genai_config.json`` (onnxruntime-genai's loop), written beside it with the
    tokenizer and config files, hashed with them at publish; what zoo.json says about it."""
    from zoo.converters.tasks import genai

    if any(isinstance(v, dict) and (v.get("io_contract") or {}).get("shapes") == "static" for v in ctx.info.values()):
        return {"file": None, "reason": "the graph was exported at static shapes: genai's cache grows each step"}
    return genai.write_config(current.parent, current, io)


def task_check(record: Any) -> str | None:
    """The task check parity runs: the record's task, or the one its I/O contract names (Whisper is an
    automatic-speech-recognition model checked by generation, as text2text-generation is)."""
    if record is None:
        return None
    return (record.extra.get("io") or {}).get("check") or record.task


def write_onnx_metadata(path: Path, source: Source, opened: Opened, conversion: dict[str, Any], report: Any) -> None:
    """zoo's ``metadata_props`` on an ONNX result: where it came from, its I/O, and its parity report.
    An ONNX source's own ``zoo.*`` entries travel on, so its file is rewritten; otherwise the entries
    are appended to the file without touching the graph's bytes."""
    from zoo.converters.edges.torch_onnx import write_metadata
    from zoo.converters.parity.report import json_safe

    props = {**source.onnx_metadata(), "zoo.version": __version__,
             "zoo.parity": json.dumps(json_safe({"passed": report.passed, "max_abs_diff": report.max_abs_diff,
                                       "atol": report.tolerance.atol, "rtol": report.tolerance.rtol,
                                       "inputs_sha256": report.inputs_sha256, "reference": source.kind,
                                       "outputs": {k: {"max_abs_diff": v.get("max_abs_diff"), "passed": v.get("passed")}
                                                   for k, v in report.outputs.items()}}))}
    if conversion.get("exporter"):
        props["zoo.exporter"] = conversion["exporter"]
    if opened.labels:
        props["zoo.labels"] = json.dumps(list(opened.labels))
    if not opened.metadata:
        write_metadata(path, props)
        return
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    merged = {p.key: p.value for p in model.metadata_props}
    merged.update(props)
    del model.metadata_props[:]
    for k, v in merged.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
