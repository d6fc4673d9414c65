"""``zoo parity``: compare any two models on the same inputs, or every format a
model can reach (``--matrix``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.settings import Settings

RUNNABLE = (".onnx", ".pt2", ".tflite", ".keras")


def is_model_file(text: str) -> bool:
    """A model file zoo can run, or a SavedModel directory."""
    path = Path(text).expanduser()
    return path.suffix.lower() in RUNNABLE and path.exists() or (path / "saved_model.pb").is_file()


def open_model(name: str, settings: Settings, progress: Any = None) -> tuple[Any, Any]:
    """The pipeline's own source for ``name``, fetched, verified and opened: ``(Source, Opened)``."""
    from zoo.progress import quiet
    from zoo.registry.index import Registry
    from zoo.sources import source_for_name

    progress = progress or quiet()
    source = source_for_name(name, settings, Registry(settings), progress)
    with progress.stage("fetch", source.label):
        source.fetch(progress)
    source.verify(progress)
    return source, source.open(progress)


def model_side(name: str, settings: Settings, request: Any = None) -> dict[str, Any]:
    """The source model behind a name, with zoo's parity inputs for it (the pipeline's own source, the
    inputs the user asked for when ``request`` says)."""
    from zoo.converters.parity.inputs import apply_input_request

    source, opened = open_model(name, settings)
    apply_input_request(opened, request, source.record)
    return {"label": f"{source.model_id}@{source.revision[:12]} ({source.node})", "run": opened.reference,
            "inputs": opened.input_sets, "names": opened.input_names, "outputs": opened.output_names,
            "classifiers": opened.classifier_outputs, "notes": opened.input_notes, "metadata": opened.metadata,
            "task": source.record.task if source.record else None, "torch_model": opened.torch_model}


def file_side(text: str, settings: Settings, names: list[str] | None = None, outputs: list[str] | None = None,
              request: Any = None, reference: bool | None = None) -> dict[str, Any]:
    """A file's runner and, when it is the reference (by default: when no reference ``names`` are given), its
    inputs (inferred from its signature and graph, or as the user gave them); ``names`` (the reference's
    inputs) feed a candidate .pt2 (positional)."""
    if reference is None:
        reference = names is None
    from zoo.converters.parity.runners import artifact_runner

    path = Path(text).expanduser()
    side: dict[str, Any] = {"label": str(path), "path": path}
    if path.is_file():
        from zoo.safety import check_model_file

        check_model_file(path)
    if path.name == "saved_model.pb" or (path / "saved_model.pb").is_file():  # a program: its ops are checked first
        from zoo.converters.loaders.saved_model_check import check_saved_model

        check_saved_model(path.parent if path.name == "saved_model.pb" else path)
    if path.suffix == ".pt2":  # torch.export.load can run code from a foreign archive
        from zoo.hashing import sha256_file
        from zoo.registry.index import Registry
        from zoo.sources.files import require_zoo_written

        require_zoo_written(path, sha256_file(path), Registry(settings))
    spec, graph = _signature(path)
    if spec is not None:
        side.update(names=[s["name"] for s in spec[0]], outputs=spec[1], metadata=spec[2])
    input_names = (names if path.suffix == ".pt2" else None) or side.get("names") or names
    if input_names is None:
        raise errors.UnsupportedError(f"cannot tell the inputs of {path.name}",
                                      hint="compare it against an .onnx file or a model name as the first argument")
    side["run"] = artifact_runner(path, input_names, side.get("outputs") or outputs)
    if reference and spec is not None:
        from zoo.converters.parity.sampling import signature_input_sets

        side["inputs"], side["notes"] = signature_input_sets(spec[0], spec[2], model=graph, reference=side["run"],
                                                             request=request)
        side["graph"] = graph
    return side


def _signature(path: Path) -> tuple[Any, Any]:
    """(spec, outputs, metadata) and the ONNX graph of a file zoo can read a signature from."""
    if path.suffix in (".onnx", ".pt2"):
        from zoo.converters.parity.inputs import file_signature

        graph = None
        if path.suffix == ".onnx":
            import onnx

            graph = onnx.load(str(path), load_external_data=False)
        return file_signature(graph if graph is not None else path), graph
    if path.suffix == ".tflite":
        from zoo.converters.loaders.tflite_file import tflite_signature

        return tflite_signature(path)[:3], None
    return None, None


def candidate_precision(path: Path) -> str:
    """The precision class of a candidate file, read from it: an int8 or fp16 graph is checked at its own
    tolerance, as ``zoo convert`` checks it."""
    if path.suffix == ".onnx":
        import onnx

        from zoo.converters.loaders.files import onnx_precision

        return onnx_precision(onnx.load(str(path), load_external_data=False))
    if path.suffix == ".tflite":
        from zoo.converters.loaders.tflite_file import tflite_precision

        return tflite_precision(path)
    return "float32"


def file_dtype(path: Path) -> str:
    """The precision class a model file computes in (``candidate_precision``)."""
    return candidate_precision(Path(path))


def compare(a: str, b: str, settings: Settings, *, atol: float | None = None, rtol: float | None = None,
            dtype: str | None = None, request: Any = None) -> tuple[Any, str, str]:
    """Parity of ``b`` against ``a`` (the reference) on ``a``'s inputs; ``dtype`` None: the candidate's own
    precision class, read from its graph. Raises SourceModelError when ``a`` fails on its inputs. A SavedModel
    on either side is loaded and run only in a confined child (``zoo.sandbox``), as ``zoo convert`` does;
    a reference given by name is fetched and loaded here first (that may download into the caches)."""
    if not is_model_file(b):
        raise errors.NotFoundError(f"{b} is not an .onnx, .pt2, .tflite or .keras file or a SavedModel directory",
                                   hint="usage: zoo parity REFERENCE CANDIDATE (REFERENCE: a file or a model name)")

    def reference_side() -> dict[str, Any]:
        first = file_side(a, settings, request=request, reference=True) if is_model_file(a) \
            else model_side(a, settings, request)
        if "inputs" not in first:
            raise errors.UnsupportedError(f"zoo cannot make inputs for {a}: it reads no signature from it",
                                          hint="use an .onnx, .tflite or .pt2 file or a model name as the reference")
        return first

    saved = [t for t in (a, b) if is_saved_model(t)]
    if not saved:
        return _check(reference_side(), b, settings, atol, rtol, dtype)
    import shutil
    import tempfile

    from zoo.converters.parity.report import ParityReport
    from zoo.sandbox import run_confined

    first = None if is_saved_model(a) else reference_side()  # a name downloads: outside the sandbox
    (settings.home / "tmp").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="parity-", dir=settings.home / "tmp"))

    def confined(walls: list[str]) -> dict[str, Any]:
        report, ref, cand = _check(first or reference_side(), b, settings, atol, rtol, dtype)
        return {"report": report.to_dict(), "ref": ref, "cand": cand}

    try:
        out = run_confined(confined, scratch, what=f"the SavedModel {Path(saved[0]).name}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ParityReport.from_dict(out["report"]), out["ref"], out["cand"]


def is_saved_model(text: str) -> bool:
    return (Path(text).expanduser() / "saved_model.pb").is_file()


def _check(first: dict[str, Any], b: str, settings: Settings, atol: float | None, rtol: float | None,
           dtype: str | None) -> tuple[Any, str, str]:
    from zoo.converters.parity.check import check_parity, requested_tolerance
    from zoo.converters.parity.reference import run_source
    from zoo.pipeline import converter_versions

    outputs = run_source(first["run"], first["inputs"], label=first["label"], notes=first.get("notes"),
                         model=first.get("graph"))
    second = file_side(b, settings, first["names"], first.get("outputs"))
    precision = dtype or candidate_precision(Path(b).expanduser())
    tol = requested_tolerance(precision, atol, rtol)
    report = check_parity(first["run"], second["run"], first["inputs"], output_names=first.get("outputs"), tolerance=tol,
                          classifier_outputs=first.get("classifiers", ()), versions=converter_versions(),
                          reference_outputs=outputs, precision=precision, require_samples=precision != "float32",
                          task=first.get("task"), input_notes=first.get("notes"), metadata=first.get("metadata"))
    return report, first["label"], second["label"]


def matrix(name: str, settings: Settings) -> list[dict[str, Any]]:
    """Pull ``name`` in every reachable format; each row is checked against the same source on the same inputs."""
    from zoo.converters import graph
    from zoo.options import Options
    from zoo.pipeline import pull
    from zoo.progress import quiet
    from zoo.registry.index import Registry
    from zoo.sources import source_for_name

    source = source_for_name(name, settings, Registry(settings), quiet())
    node = source.planned_node()
    if node is None:  # a Hugging Face repo seen for the first time: its files say what it is
        source.fetch(quiet())
        node = source.node
    rows = []
    for fmt in graph.reachable(node, source.record.task if source.record else None):
        start = time.perf_counter()
        try:
            result = pull(name, Options(format=fmt, allow_mismatch=True), settings=settings)
        except errors.ZooError as exc:
            rows.append({"format": fmt, "passed": False, "error": exc.message, "seconds": time.perf_counter() - start})
            continue
        outputs = result.parity.get("outputs", {})
        top1 = [o.get("top1_agreement") for o in outputs.values() if o.get("top1_agreement") is not None]
        rows.append({"format": fmt, "chain": result.conversion.get("chain"), "route": won_route(result.conversion),
                     "routes": [{k: a.get(k) for k in ("route", "tools", "rung", "result", "reason")}
                                for a in result.conversion.get("routes") or ()],
                     "passed": result.parity["passed"],
                     "max_abs_diff": result.parity["max_abs_diff"], "top1_agreement": min(top1) if top1 else None,
                     "atol": result.parity.get("tolerance", {}).get("atol"), "size": result.size,
                     "cached": result.cached, "seconds": round(time.perf_counter() - start, 2),
                     "inputs_sha256": result.parity.get("inputs_sha256"), "path": result.path})
    return rows


def won_route(conversion: dict[str, Any]) -> str | None:
    """The tools and rung of the route that won (``conversion.routes``), for a request with several routes:
    e.g. ``litert-torch, static shapes``; None for a request with one route."""
    won = next((a for a in conversion.get("routes") or () if a.get("won")), None)
    if won is None:
        return None
    return ", ".join(won["tools"]) + (f", {won['rung']}" if won.get("rung") != "route" else "")


def matrix_markdown(name: str, rows: list[dict[str, Any]]) -> str:
    from zoo.converters.parity.report import figure

    lines = [f"| {name} | chain | passed | max abs diff | top-1 agreement | atol | size | time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            error = r["error"].replace("|", "/")
            lines.append(f"| {r['format']} | | error: {error[:200]}{'...' if len(error) > 200 else ''} | | | | | {r['seconds']:.1f} s |")
            continue
        top1 = "" if r["top1_agreement"] is None else f"{r['top1_agreement']:.0%}"
        chain = r["chain"] + (f" ({r['route']})" if r.get("route") else "")
        lines.append(f"| {r['format']} | {chain} | {'yes' if r['passed'] else 'NO'} | {figure(r['max_abs_diff'], '.2e')} | "
                     f"{top1} | {r['atol']:g} | {r['size'] / 1e6:.2f} MB | {r['seconds']:.1f} s{' (cached)' if r['cached'] else ''} |")
    return "\n".join(lines)
