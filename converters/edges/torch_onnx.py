"""PyTorch -> ONNX with torch.onnx. ``--exporter auto`` tries the TorchScript exporter first and the dynamo
exporter when it raises (the pipeline also re-exports with dynamo when the TorchScript result fails
parity), for models over 2 GB too (see ``auto_order``). Writes only ``out_path`` (and its
external data file for models over 2 GB)."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.edges.torchscript import lean_shape_inference
from zoo.converters.loaders.torch_models import TorchModel

DIM_MAX = {"batch": 4096, "sequence": None, "past_sequence": 8192}
CACHE_AXES = ("batch", "sequence", "past_sequence", "total_sequence")  # tasks/text_generation.io_names


def exporter_versions() -> dict[str, str]:
    from zoo.versions import dist_versions

    return dist_versions(("torch", "onnx", "onnxscript", "onnxruntime"))


def dynamic_shapes(tm: TorchModel, seq_max: int | None) -> Any:
    """``torch.export`` dynamic shapes for ``tm``'s dynamic axes, sharing one Dim per name."""
    import torch

    dims: dict[str, Any] = {}
    for name in ("batch", "sequence"):
        top = DIM_MAX[name] if name != "sequence" else seq_max
        dims[name] = torch.export.Dim(name, min=1, max=top) if top else torch.export.Dim(name, min=1)
    named = {dim for axes in tm.dynamic_axes.values() for dim in axes.values()}
    if named == set(CACHE_AXES):  # a decoder's KV cache: one program for the prefill (past 0) and every step
        dims.update(cache_dims(seq_max))
    elif "encoder_sequence" in named and named <= {*CACHE_AXES, "encoder_sequence"}:
        # an encoder-decoder's encoder, or its decoder with the self-attention cache (tasks/seq2seq.py): named Dims,
        # the past from 0 as a text decoder's, the encoder's length its own
        dims.update(cache_dims(seq_max))
        dims["encoder_sequence"] = torch.export.Dim("encoder_sequence", min=1, max=seq_max or DIM_MAX["past_sequence"])
    elif named - set(dims):  # other axes the model relates (an encoder-decoder's): torch.export finds how
        dims = {dim: torch.export.Dim.DYNAMIC for dim in named}
    per_input = tuple({axis: dims[dim] for axis, dim in tm.dynamic_axes[name].items()} for name in tm.input_names)
    params = list(inspect.signature(tm.module.forward).parameters.values())
    fixed = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        # forward(a, b, *rest): one entry per named parameter, then one holding the rest
        return (*per_input[:len(fixed)], per_input[len(fixed):]) if fixed else (per_input,)
    return per_input


def cache_dims(seq_max: int | None) -> dict[str, Any]:
    """The cache lengths of a text-generation decoder (``tasks/text_generation.io_names``) as named Dims. A past
    of 0 (the prefill) is in range: with ``Dim.DYNAMIC`` torch.export assumes every size >= 2 (its 0/1
    specialisation) and a program exported at a decode step refused the prefill and single-token shapes
    (``Guard failed: attention_mask.size()[1] >= 4``). torch.export finds that ``total_sequence`` is
    ``past_sequence + sequence`` itself; the example must hold sizes >= 2 (batch 2, 3 new tokens after 5)."""
    import torch

    top = seq_max or DIM_MAX["past_sequence"]
    return {"past_sequence": torch.export.Dim("past_sequence", min=0, max=top),
            "total_sequence": torch.export.Dim("total_sequence", min=1, max=2 * top)}


def auto_order() -> list[str]:
    """``--exporter auto``: TorchScript first, dynamo when it raises (or, in the pipeline, when its result fails
    parity). Measured on 2 cores: resnet50 exports in 0.8 s with TorchScript against 5.2 s with dynamo, a
    BERT-base encoder in 3.1 s against 8.7 s, both within 1e-7 of each other; parity decides, not the exporter's
    reputation. The same order above the protobuf limit (external data): TorchScript's one file per tensor is
    streamed into one data file (``onnx_external.consolidate``), and a 1.1B-parameter Llama exports in about
    half of dynamo's time (70 s of py-spy samples against 122 s, most of it writing), whose capture,
    decompositions and rewrites grow with the layers (bench/README.md, ``bench_llm.py``)."""
    return ["torchscript", "dynamo"]


def export_onnx(tm: TorchModel, example: tuple, out_path: Path, *, opset: int, exporter: str = "auto",
                seq_max: int | None = None, external_data_bytes: int | None = None) -> dict[str, Any]:
    """Export ``tm.module`` at ``example`` inputs; return what was used and why. Weights over
    ``external_data_bytes`` (default: protobuf's limit) are written as ``model.onnx.data`` beside the graph."""
    import torch

    from zoo.converters.edges.onnx_external import PROTO_LIMIT, consolidate

    n_bytes = sum(p.numel() * p.element_size() for p in tm.module.parameters())
    threshold = PROTO_LIMIT if external_data_bytes is None else external_data_bytes
    external = n_bytes > threshold
    info: dict[str, Any] = {"opset": opset, "external_data": external, "versions": exporter_versions()}
    failures = []
    order = auto_order() if exporter == "auto" else [exporter]
    for kind in order:
        out_path.unlink(missing_ok=True)
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    program = torch.onnx.export(tm.module, example, str(out_path), input_names=tm.input_names,
                                      output_names=tm.output_names, opset_version=opset, dynamo=True,
                                      dynamic_shapes=dynamic_shapes(tm, seq_max),
                                      external_data=external, verbose=False)
                else:
                    with lean_shape_inference():
                        torch.onnx.export(tm.module, example, str(out_path), input_names=tm.input_names,
                                          output_names=tm.output_names, opset_version=opset, dynamo=False,
                                          dynamic_axes=tm.dynamic_axes, do_constant_folding=True)
            written = program_opset(program) if kind == "dynamo" else opset  # TorchScript honours it
            if written != opset:
                convert_opset(out_path, written, opset, kind, threshold)
            if external:  # exactly one data file, named model.onnx.data (see onnx_external)
                info["external_data"] = consolidate(out_path, threshold)
        except Exception as exc:  # noqa: BLE001 - each exporter fails in its own way
            failures.append(f"{kind}: {type(exc).__name__}: {_first_line(exc)}")
            continue
        info["exporter"] = kind
        if failures:
            info["fallback_reason"] = failures[0]
        return info
    out_path.unlink(missing_ok=True)
    raise errors.ConversionError("torch.onnx could not export the model: " + "; ".join(failures),
                                 hint="try another --opset, or report the model and the message above")


def program_opset(program: Any) -> int:
    opsets = getattr(getattr(program, "model", None), "opset_imports", None) or {}
    return int(opsets.get("", opsets.get("ai.onnx", 0)))


def convert_opset(path: Path, got: int, opset: int, kind: str, threshold: int | None = None) -> None:
    """The dynamo exporter targets opset >= 18 and ignores a lower request:
    convert down with onnx's version converter, or fail so the next exporter runs."""
    import onnx
    from onnx import version_converter

    from zoo.converters.edges.onnx_external import data_files, save_model

    try:
        old = data_files(path)
        converted = version_converter.convert_version(onnx.load(str(path)), opset)
        if not old:
            onnx.checker.check_model(converted)  # the converter can leave attributes the target opset lacks
        for location in old:
            (path.parent / location).unlink(missing_ok=True)
        save_model(converted, path, threshold)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"{kind} exporter wrote opset {got} and onnx cannot convert it to {opset}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """What torch.onnx's failure says first: its ``#`` comment lines skipped (the whole text when it is nothing else)."""
    return errors.first_line(exc, skip="#") or str(exc).strip()[:300]


def write_metadata(path: Path, props: dict[str, str]) -> None:
    """Add ONNX ``metadata_props`` by appending them to the serialized model.

    ``ModelProto.metadata_props`` is repeated field 14; protobuf concatenates
    repeated fields found anywhere in a message, so appending entries is a valid
    edit that leaves every byte of the graph (the bytes parity checked) as it
    was, and costs nothing for a large model. Keys must not exist yet.
    """
    blob = bytearray()
    for key, value in props.items():
        entry = _field(1, key.encode()) + _field(2, value.encode())  # StringStringEntryProto
        blob += _field(14, entry)
    with open(path, "ab") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload
