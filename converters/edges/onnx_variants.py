"""ONNX -> ONNX variants: fp16 weights and compute, int8 dynamic quantisation,
and an onnxruntime-optimised graph. Inputs and outputs keep their names and
fp32 types, so every variant is checked against the source model on the same
inputs, at its own dtype's tolerance."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

# Hints that hold whatever the source was (a model pulled by name or an .onnx file): the plain fp32
# ONNX graph was fine up to this step; the other variants may still be reached.
_HINTS = {
    "fp16": "the fp32 ONNX model is unaffected: use it, or try onnx-int8 or onnx-opt; report the model to zoo "
            "with the message above",
    "int8": "the fp32 ONNX model is unaffected: use it, or try onnx-fp16 or onnx-opt for a smaller or faster "
            "file; report the model to zoo with the message above",
    "opt": "the fp32 ONNX model is unaffected: use it, or try onnx-fp16 or onnx-int8; report the model to zoo "
           "with the message above",
}


def _fail(tool: str, variant: str, exc: BaseException) -> errors.ConversionError:
    return errors.ConversionError(f"{tool} failed: {type(exc).__name__}: {str(exc)[:300]}", hint=_HINTS[variant])


def unmerge_initializers(model) -> int:
    """Give every ``Identity`` of an initializer its own copy of the tensor, and drop the ``Identity``.

    torch.onnx's TorchScript exporter stores identical constants once and feeds the other users through
    ``Identity`` nodes (an untrained timm ResNet's zero-initialised norms fold into identical conv biases);
    onnxruntime's quantiser needs a Conv's weight and bias to *be* initializers ("Expected onnx::Conv_205
    to be an initializer"). Identities that produce a graph output, or read a graph input, stay. Returns
    how many were replaced (the model is changed in place)."""
    import onnx

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    protected = {o.name for o in graph.output} | {i.name for i in graph.input}
    kept, replaced = [], 0
    for node in graph.node:  # topological order: an Identity of an Identity resolves too
        if (node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.input[0] in inits
                and node.input[0] not in protected and node.output[0] not in protected):
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            inits[copy.name] = copy
            replaced += 1
        else:
            kept.append(node)
    if replaced:
        del graph.node[:]
        graph.node.extend(kept)
    return replaced

def pair_files(src: Path, ctx: EdgeContext) -> list[str]:
    """The files a variant edge converts: ``src`` alone, or, for an encoder-decoder (``torch->onnx`` wrote
    ``files``), every graph of the pair (each keeps its name; the decoder stays the primary file)."""
    files = [str(f) for f in ((ctx.info.get("torch->onnx") or {}).get("files") or {}).values()]
    return files if src.name in files and len(files) > 1 else [src.name]


def _outputs(src: Path, out_dir: Path, ctx: EdgeContext) -> list[tuple[Path, Path]]:
    """(source file, file to write) for each graph; a single graph is written as ``model.onnx``."""
    names = pair_files(src, ctx)
    if names == [src.name]:
        return [(src, out_dir / "model.onnx")]
    return [(src.parent / n, out_dir / n) for n in sorted(names, key=lambda n: n == src.name)]  # the primary last


_PROTO_LIMIT = 1_800_000_000  # protobuf cannot serialise 2 GiB: larger graphs keep their tensors outside


@edge("onnx", "onnx-fp16", name="onnxruntime.transformers.float16", dtype="float16", primary="model.onnx",
       tools=("onnx", "onnxruntime"))
def onnx_to_fp16(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for one, out in _outputs(src, out_dir, ctx):
        try:
            model = convert_float_to_float16(onnx.load(str(one)), keep_io_types=True)
            onnx.save(model, str(out))
        except Exception as exc:  # noqa: BLE001
            raise _fail("fp16 conversion", "fp16", exc) from exc
    ctx.info["onnx->onnx-fp16"] = {"keep_io_types": True}
    return out


@edge("onnx", "onnx-int8", name="onnxruntime.quantization", dtype="int8", primary="model.onnx",
       tools=("onnx", "onnxruntime"))
def onnx_to_int8(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    folded = 0
    for one, out in _outputs(src, out_dir, ctx):
        folded += _int8_file(one, out, out_dir, ctx)
    ctx.info["onnx->onnx-int8"] = {"weight_type": "QInt8", "per_channel": True, "activations": "dynamic uint8",
                                   "constants_as_initializers": folded}
    return out


def _int8_file(src: Path, out: Path, out_dir: Path, ctx: EdgeContext) -> int:
    """Quantise one graph into ``out``; how many Constant nodes were made initializers."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise errors.UnsupportedError("int8 dynamic quantisation needs an fp32 graph; this one holds fp16 weights",
                                      hint="quantise the fp32 ONNX model instead")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser warns on the root logger
    scratch = out_dir / ".unmerged"  # working copies; removed, since the edge's directory is what gets published
    folded = constants_as_initializers(model)
    if folded:  # the quantiser finds weights only among initializers (PaddlePaddle's exporter writes Constant nodes)
        scratch.mkdir(exist_ok=True)
        src = scratch / "weights-as-initializers.onnx"
        onnx.save(model, str(src))
    try:
        source = src
        if any(n.op_type == "Identity" for n in model.graph.node):
            full = onnx.load(str(src))  # with its external data: the copies need the tensors' bytes
            unmerged = unmerge_initializers(full)
            if unmerged:
                scratch.mkdir(exist_ok=True)
                source = scratch / "model.onnx"
                onnx.save(full, str(source), save_as_external_data=full.ByteSize() > _PROTO_LIMIT,
                          location="model.onnx.data")
                ctx.notes.append(f"int8: {unmerged} initializer(s) the exporter had merged through Identity nodes "
                                 "were given their own copies for the quantiser")
        # per-channel int8 weights; activations quantised at run time (no calibration data needed)
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail("int8 dynamic quantisation", "int8", exc) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folded


def constants_as_initializers(model: Any) -> int:
    """Move the main graph's ``Constant`` nodes holding a tensor into initializers, in place; how many."""
    moved = [n for n in model.graph.node if n.op_type == "Constant" and len(n.attribute) == 1
             and n.attribute[0].name == "value" and n.output]
    for node in moved:
        tensor = node.attribute[0].t
        tensor.name = node.output[0]
        model.graph.initializer.append(tensor)
        model.graph.node.remove(node)
    return len(moved)


@edge("onnx", "onnx-opt", name="onnxruntime graph optimizer", primary="model.onnx", tools=("onnx", "onnxruntime"))
def onnx_to_optimized(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import onnxruntime as ort

    for one, out in _outputs(src, out_dir, ctx):
        opts = ort.SessionOptions()
        # EXTENDED fusions stay portable across CPU machines; ALL would bake in layout
        # transforms for this machine's instruction set.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        try:
            ort.InferenceSession(str(one), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise _fail("onnxruntime optimisation", "opt", exc) from exc
        if not out.is_file():
            raise errors.ConversionError("onnxruntime wrote no optimised model")
    ctx.info["onnx->onnx-opt"] = {"level": "ORT_ENABLE_EXTENDED", "onnxruntime": ort.__version__}
    return out
