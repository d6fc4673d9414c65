"""``assert_parity``, ``assert_accuracy`` and ``pull``: zoo's checks as plain test assertions.

Every failure is an ``AssertionError`` whose message says what differed, by how much, against which
tolerance, and where the conversion first diverged when zoo can tell; every report made is also left
for the pytest plugin (``zoo.testing.recorder``), which attaches it to the test's report and JUnit XML.
Settings come from the environment as for the CLI: ``ZOO_HOME``/``HF_HOME`` caches (``HF_HUB_OFFLINE=1``
in CI) and ``ZOO_SERVER`` (remote mode: the server converts, this process downloads and verifies).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.testing import recorder


@dataclass
class PulledArtifact:
    """A pulled artifact: its path (``os.fspath`` works), format, digest and parity report."""

    path: Path
    model: str
    format: str
    verified: bool
    digest: str
    parity: dict[str, Any] = field(repr=False)
    cached: bool = False

    def __fspath__(self) -> str:
        return str(self.path)


def pull(name: str, format: str = "onnx", **options: Any) -> Path:
    """The verified artifact's primary file for ``name`` in ``format``, cached as ``zoo pull`` caches it
    (``options``: any ``zoo.options.Options`` field, e.g. ``opset=18``, ``atol=1e-3``)."""
    return pull_artifact(name, format, **options).path


def pull_artifact(name: str, format: str = "onnx", **options: Any) -> PulledArtifact:
    """As :func:`pull`, with the artifact's report; a conversion that fails parity is an AssertionError."""
    from zoo.options import Options
    from zoo.remote import pull_anywhere
    from zoo.settings import get_settings

    label = f"{name} -> {format}"
    try:
        result = pull_anywhere(name, Options.from_mapping(options, format=format), get_settings())
    except errors.ParityError as exc:
        report = exc.details.get("report") or {}
        _record(label, report)
        raise AssertionError(pull_failure(label, exc)) from None
    _record(label, result.parity)
    return PulledArtifact(Path(result.path), result.model, result.format, result.verified, result.digest,
                          result.parity, result.cached)


def assert_parity(reference: Any, candidate: Any, *, inputs: Any = None, atol: float | None = None,
                  rtol: float | None = None, top1: float | None = None, dtype: str | None = None) -> Any:
    """Fail unless ``candidate`` computes what ``reference`` computes, on zoo's inputs for the reference
    (or ``inputs``), within the tolerance for the candidate's precision (or ``atol``/``rtol``); ``top1``:
    the least top-1 agreement on real inputs (zoo's sample images or sentences, or ``inputs``).

    Either side: a model name (``resnet50``), a model file or pulled artifact (``.onnx``, ``.pt2``,
    ``.tflite``, ``.keras``, a SavedModel directory), a torch module, a Keras model, an
    ``onnx.ModelProto`` or a callable ``feeds -> outputs``. Returns the ParityReport when it passes."""
    from zoo.converters.parity.check import check_parity, requested_tolerance
    from zoo.pipeline import converter_versions
    from zoo.settings import get_settings
    from zoo.testing.sides import input_sets, resolve

    if top1 is not None and not 0 <= top1 <= 1:
        raise errors.UsageError(f"top1 is a fraction of rows (0..1), not {top1}")
    settings = get_settings()
    ref = resolve(reference, settings)
    cand = resolve(candidate, settings, like=ref)
    sets = input_sets(inputs, ref, cand)
    tolerance = requested_tolerance(dtype or cand.dtype, atol, rtol)
    # top1 with no output known to hold class scores (a model in memory, a file): the first output
    classifiers = ref.classifiers or ([0] if top1 is not None else [])
    report = check_parity(ref.run, cand.run, sets, output_names=ref.output_names or cand.output_names,
                          tolerance=tolerance, classifier_outputs=classifiers, versions=converter_versions(),
                          min_top1_agreement=top1)
    label = f"{ref.label} -> {cand.label}"
    _record(label, report.to_dict())
    if report.passed:
        return report
    divergence = _divergence(ref, cand, report, sets, tolerance) if ref.torch_model is not None and cand.onnx_path else None
    raise AssertionError(parity_failure(label, report, divergence))


def assert_accuracy(reference: str, candidate: Any, data: str | os.PathLike, *, max_drop: float = 0.5,
                    limit: int | None = None, split: str | None = None, **options: Any) -> dict[str, Any]:
    """Fail when ``candidate`` (a format to pull, or a model file / pulled artifact) scores more than
    ``max_drop`` percentage points below the source model ``reference`` on the labelled data set ``data``
    (zoo eval's layouts); returns the evaluation."""
    from zoo.comparison import open_model
    from zoo.converters.graph import formats
    from zoo.eval.data import load_data
    from zoo.eval.evaluate import Bench, floor_failure
    from zoo.settings import get_settings

    settings = get_settings()
    dataset = load_data(data, limit=limit, split=split)
    source, opened = open_model(reference, settings)
    bench = Bench(source, opened, dataset, settings)
    if isinstance(candidate, str) and candidate in formats():
        art = pull_artifact(reference, candidate, **options)
        row = bench.artifact_at(art.path, format=art.format, digest=art.digest, verified=art.verified)
    else:
        row = bench.file(Path(os.fspath(candidate)))
    label = f"{source.model_id} -> {row['format']} on {dataset.path.name}"
    recorder.record(label, _accuracy_properties(row), accuracy_text(label, row))
    why = floor_failure(row, max_drop)
    if why:
        raise AssertionError(f"zoo: {label}: {why}\n{accuracy_text(label, row)}")
    return row


# --- messages ---------------------------------------------------------------------------------------------
def parity_failure(label: str, report: Any, divergence: dict[str, Any] | None) -> str:
    tol = report.tolerance
    scaled = " (scaled by each output's magnitude)" if tol.scaled else ""
    lines = [f"zoo: {label}: {report.summary_line()}", f"  tolerance: atol {tol.atol:g}{scaled}, rtol {tol.rtol:g}",
             "  worst outputs:"]
    for m in report.worst(3):
        lines.append(f"    {m.output} on {m.input_set}: max abs {_g(m.max_abs_diff)} (atol {_g(m.atol)}), "
                     f"max rel {_g(m.max_rel_diff)}, cosine {_g(m.cosine, '.6f')}"
                     + (f", top-1 agreement {m.top1_agreement:.0%}" if m.top1_agreement is not None else "")
                     + (f" - {m.reason}" if m.reason else ""))
    if report.error:
        lines.append(f"  error: {report.error}")
    lines.extend(divergence_lines(divergence))
    return "\n".join(lines)


def pull_failure(label: str, exc: errors.ZooError) -> str:
    lines = [f"zoo: {label}: {exc.message}", "  worst outputs:"]
    for m in exc.details.get("worst") or []:
        lines.append(f"    {m['output']} on {m['input_set']}: max abs {_g(m['max_abs_diff'])} (atol {_g(m['atol'])}), "
                     f"max rel {_g(m['max_rel_diff'])}" + (f" - {m['reason']}" if m.get("reason") else ""))
    lines.extend(divergence_lines(exc.details.get("divergence")))
    if exc.hint:
        lines.append(f"  hint: {exc.hint}")
    return "\n".join(lines)


def divergence_lines(divergence: dict[str, Any] | None) -> list[str]:
    from zoo.converters.parity.locate import describe

    return [f"  {line}" for line in describe(divergence)]


def accuracy_text(label: str, row: dict[str, Any]) -> str:
    pct = lambda m: ", ".join(f"{k} {v:.2%}" for k, v in m.items())  # noqa: E731
    delta = ", ".join(f"{k} {v:+.2f}" for k, v in row["delta"].items())
    return (f"  {label}: {row['dataset']['examples']} examples\n  source {pct(row['source'])}\n"
            f"  {row['format']} {pct(row['metrics'])}\n  delta {delta} points; top-1 agreement {row['agreement']:.1%}")


def _divergence(ref: Any, cand: Any, report: Any, sets: list[Any], tolerance: Any) -> dict[str, Any] | None:
    """Where the torch -> onnx candidate first diverges, on the input set that failed: the pipeline's locator
    (parity/locate.py), which never raises."""
    from zoo.converters.parity.locate import locate

    return locate(report, [("torch", "onnx")], [Path(cand.onnx_path)], sets, list(sets[0].feeds), ref.torch_model,
                  tolerance)


def _record(label: str, parity: dict[str, Any]) -> None:
    from zoo.check.checks import parity_figures
    from zoo.check.reports import properties

    figures = {**parity_figures(parity), "passed": bool(parity.get("passed"))}
    text = parity_text(label, parity)
    recorder.record(label, properties(figures), text)


def parity_text(label: str, parity: dict[str, Any]) -> str:
    from zoo.converters.parity.report import ParityReport

    if not parity.get("tolerance"):
        return f"{label}: no parity report"
    report = ParityReport.from_dict(parity)
    lines = [f"{label}: {report.summary_line()}"]
    for name, o in report.outputs.items():
        top1 = o.get("top1_agreement")
        lines.append(f"  {name}: max abs {_g(o.get('max_abs_diff'))}, max rel {_g(o.get('max_rel_diff'))}, cosine "
                     f"{_g(o.get('cosine'), '.6f')}" + ("" if top1 is None else f", top-1 agreement {top1:.0%}"))
    lines.append(f"  tolerance atol {report.tolerance.atol:g} rtol {report.tolerance.rtol:g}; inputs sha256 "
                 f"{report.inputs_sha256[:16]}")
    return "\n".join(lines)


def _accuracy_properties(row: dict[str, Any]) -> dict[str, str]:
    from zoo.check.reports import properties

    passed = {"passed": True, "accuracy": {k: row[k] for k in ("metrics", "source", "delta")}}
    return {k: v for k, v in properties(passed).items() if k != "zoo.passed"}


def _g(value: Any, spec: str = ".3g") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "nan" if math.isnan(number) else format(number, spec)
