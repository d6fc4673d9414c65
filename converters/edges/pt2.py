"""Edges into and out of the ``pt2`` node from files: ONNX -> ``.pt2`` (zoo's own
converter, ``converters/onnx_torch.py``) and ``.pt2`` -> ONNX (torch.onnx's dynamo
exporter on the loaded ExportedProgram). With them the planner reaches PyTorch
from Keras (keras-model -> onnx -> pt2) and any ONNX format from a ``.pt2``."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge


@edge("onnx", "pt2", name="zoo.onnx_torch", primary="model.pt2", tools=("torch", "onnx"))
def onnx_to_pt2(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    from zoo.converters.onnx_torch.module import export_pt2

    out = out_dir / "model.pt2"
    ctx.info["onnx->pt2"] = export_pt2(src, out)
    return out


@edge("pt2", "onnx", name="torch.onnx (ExportedProgram)", primary="model.onnx", tools=("torch", "onnx", "onnxscript"))
def pt2_to_onnx(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import torch

    from zoo.converters.edges.torch_onnx import (
        convert_opset,
        exporter_versions,
        program_opset,
    )
    from zoo.converters.loaders.pt2_archive import load_program, program_signature

    program, signature = load_program(src)
    spec, outputs = program_signature(program, signature)
    out = out_dir / "model.onnx"
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(program, program_example(program, spec), str(out), dynamo=True,
                                             input_names=[s["name"] for s in spec], output_names=outputs or None,
                                             opset_version=ctx.opset, verbose=False)
        written = program_opset(onnx_program)
        if written != ctx.opset:
            convert_opset(out, written, ctx.opset, "dynamo")
    except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways
        out.unlink(missing_ok=True)
        raise errors.ConversionError(f"torch.onnx could not export {src.name}: {type(exc).__name__}: {str(exc)[:300]}",
                                     hint="try another --opset, or export the source model to ONNX directly") from exc
    _name_dims(out, spec)
    ctx.info["pt2->onnx"] = {"exporter": "dynamo", "opset": ctx.opset, "versions": exporter_versions()}
    return out


def program_example(program: Any, spec: list[dict[str, Any]]) -> tuple:
    """The program's own example inputs, or inputs made from its signature."""
    import torch

    saved = program.example_inputs
    if saved and saved[0] and not saved[1]:
        return tuple(saved[0])
    from zoo.converters.parity.inputs import file_input_sets

    feeds = file_input_sets(spec, {})[0].feeds
    return tuple(torch.from_numpy(feeds[s["name"]]) for s in spec)


def _name_dims(path: Path, spec: list[dict[str, Any]]) -> None:
    """Give the exported graph's symbolic dims (``s21``) the names in the program's signature (``batch``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names: dict[str, str] = {}
    for value, item in zip(model.graph.input, spec):
        for dim, declared in zip(value.type.tensor_type.shape.dim, item["shape"]):
            if dim.dim_param and isinstance(declared, str) and declared.isidentifier():
                names.setdefault(dim.dim_param, declared)
    if not names:
        return
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(model, str(path))
