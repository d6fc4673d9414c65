"""Run a model on numpy feeds, whatever its format: the callables parity compares.

Every runner is ``feeds: dict[str, np.ndarray] -> list[np.ndarray]``, outputs
in the model's declared order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from zoo import errors

Runner = Callable[[dict[str, Any]], list[Any]]


def torch_inputs(feeds: dict[str, Any], names: list[str]) -> tuple:
    import torch

    return tuple(torch.from_numpy(feeds[n]) for n in names)


def _call_torch(module: Any, feeds: dict[str, Any], names: list[str]) -> list[Any]:
    import torch

    with torch.no_grad():
        out = module(*torch_inputs(feeds, names))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [t.detach().cpu().numpy() for t in out]


def torch_runner(tm: Any) -> Runner:
    return lambda feeds: _call_torch(tm.module, feeds, tm.input_names)


def onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
        raise errors.ConversionError(f"onnxruntime cannot load {path.name}: {str(exc)[:400]}",
                                     hint="the converted graph is invalid; try another --opset, --exporter or target format") from exc
    names = [i.name for i in session.get_inputs()]
    return lambda feeds: session.run(None, {n: feeds[n] for n in names})


def pt2_runner(path: Path, input_names: list[str]) -> Runner:
    import torch

    try:
        module = torch.export.load(str(path)).module()
    except Exception as exc:  # noqa: BLE001
        raise errors.InvalidModelError(f"cannot load {path.name} as a torch.export program: {str(exc)[:300]}") from exc
    return lambda feeds: _call_torch(module, feeds, input_names)


def artifact_runner(path: Path, input_names: list[str]) -> Runner:
    if path.suffix == ".onnx":
        return onnx_runner(path)
    if path.suffix == ".pt2":
        return pt2_runner(path, input_names)
    raise errors.UnsupportedFormatError(f"zoo cannot run {path.name}", hint="supported files: .onnx, .pt2")
