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


def model_side(name: str, settings: Settings) -> dict[str, Any]:
    """The source model behind a name, with zoo's parity inputs for it (the pipeline's own source)."""
    source, opened = open_model(name, settings)
    return {"label": f"{source.model_id}@{source.revision[:12]} ({source.node})", "run": opened.reference,
            "inputs": opened.input_sets, "names": opened.input_names, "outputs": opened.output_names,
            "classifiers": opened.classifier_outputs, "torch_model": opened.torch_model}


def file_side(text: str, settings: Settings, names: list[str] | None = None,
               outputs: list[str] | None = None) -> dict[str, Any]:
    """A file's runner and, when its signature says, its inputs; ``names`` (the reference's inputs) feed
    files that do not name theirs, and a .pt2 (positional)."""
    from zoo.converters.parity.inputs import file_input_sets, file_signature
    from zoo.converters.parity.runners import artifact_runner

    path = Path(text).expanduser()
    side: dict[str, Any] = {"label": str(path), "path": path}
    if path.is_file():
        from zoo.safety import check_model_file

        check_model_file(path)
    if path.suffix == ".pt2":  # torch.export.load can run code from a foreign archive
        from zoo.hashing import sha256_file
        from zoo.registry.index import Registry
        from zoo.sources.files import require_zoo_written

        require_zoo_written(path, sha256_file(path), Registry(settings))
    if path.suffix in (".onnx", ".pt2"):
        spec, outputs_, meta = file_signature(path)
        side.update(inputs=file_input_sets(spec, meta), names=[s["name"] for s in spec], outputs=outputs_)
    input_names = (names if path.suffix == ".pt2" else None) or side.get("names") or names
    if input_names is None:
        raise errors.UnsupportedError(f"cannot tell the inputs of {path.name}",
                                      hint="compare it against an .onnx file or a model name as the first argument")
    side["run"] = artifact_runner(path, input_names, side.get("outputs") or outputs)
    return side


def file_dtype(path: Path) -> str:
    """The precision class a model file computes in: an ONNX graph's own (int8, float16, float32), else float32."""
    if Path(path).suffix.lower() != ".onnx":
        return "float32"
    import onnx

    from zoo.converters.loaders.files import onnx_precision

    return onnx_precision(onnx.load(str(path), load_external_data=False))


def compare(a: str, b: str, settings: Settings, *, atol: float | None = None, rtol: float | None = None,
            dtype: str = "float32") -> tuple[Any, str, str]:
    """Parity of ``b`` against ``a`` (the reference) on ``a``'s inputs."""
    from zoo.converters.parity.check import check_parity, requested_tolerance
    from zoo.pipeline import converter_versions

    if not is_model_file(b):
        raise errors.NotFoundError(f"{b} is not an .onnx, .pt2, .tflite or .keras file or a SavedModel directory",
                                   hint="usage: zoo parity REFERENCE CANDIDATE (REFERENCE: a file or a model name)")
    first = file_side(a, settings) if is_model_file(a) else model_side(a, settings)
    second = file_side(b, settings, first["names"], first.get("outputs"))
    inputs = first.get("inputs") or second.get("inputs")
    tol = requested_tolerance(dtype, atol, rtol)
    report = check_parity(first["run"], second["run"], inputs, output_names=first.get("outputs"), tolerance=tol,
                          classifier_outputs=first.get("classifiers", ()), versions=converter_versions())
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
    for fmt in graph.reachable(node):
        start = time.perf_counter()
        try:
            result = pull(name, Options(format=fmt, allow_mismatch=True), settings=settings)
        except errors.ZooError as exc:
            rows.append({"format": fmt, "passed": False, "error": exc.message, "seconds": time.perf_counter() - start})
            continue
        outputs = result.parity.get("outputs", {})
        top1 = [o.get("top1_agreement") for o in outputs.values() if o.get("top1_agreement") is not None]
        rows.append({"format": fmt, "chain": result.conversion.get("chain"), "passed": result.parity["passed"],
                     "max_abs_diff": result.parity["max_abs_diff"], "top1_agreement": min(top1) if top1 else None,
                     "atol": result.parity.get("tolerance", {}).get("atol"), "size": result.size,
                     "cached": result.cached, "seconds": round(time.perf_counter() - start, 2),
                     "inputs_sha256": result.parity.get("inputs_sha256"), "path": result.path})
    return rows


def matrix_markdown(name: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"| {name} | chain | passed | max abs diff | top-1 agreement | atol | size | time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            error = r["error"].replace("|", "/")
            lines.append(f"| {r['format']} | | error: {error[:200]}{'...' if len(error) > 200 else ''} | | | | | {r['seconds']:.1f} s |")
            continue
        top1 = "" if r["top1_agreement"] is None else f"{r['top1_agreement']:.0%}"
        lines.append(f"| {r['format']} | {r['chain']} | {'yes' if r['passed'] else 'NO'} | {r['max_abs_diff']:.2e} | "
                     f"{top1} | {r['atol']:g} | {r['size'] / 1e6:.2f} MB | {r['seconds']:.1f} s{' (cached)' if r['cached'] else ''} |")
    return "\n".join(lines)
