"""ONNX -> ONNX variants: fp16 weights and compute, int8 dynamic quantisation,
and an onnxruntime-optimised graph. Inputs and outputs keep their names and
fp32 types, so every variant is checked against the source model on the same
inputs, at its own dtype's tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge


def _fail(tool: str, exc: BaseException) -> errors.ConversionError:
    return errors.ConversionError(f"{tool} failed: {type(exc).__name__}: {str(exc)[:300]}",
                                  hint="convert to plain onnx instead, or report the model")


@edge("onnx", "onnx-fp16", name="onnxruntime.transformers.float16", dtype="float16", primary="model.onnx",
       tools=("onnx", "onnxruntime"))
def onnx_to_fp16(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = out_dir / "model.onnx"
    try:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(out))
    except Exception as exc:  # noqa: BLE001
        raise _fail("fp16 conversion", exc) from exc
    ctx.info["onnx->onnx-fp16"] = {"keep_io_types": True}
    return out


@edge("onnx", "onnx-int8", name="onnxruntime.quantization", dtype="int8", primary="model.onnx",
       tools=("onnx", "onnxruntime"))
def onnx_to_int8(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = out_dir / "model.onnx"
    model = onnx.load(str(src), load_external_data=False)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise errors.UnsupportedError("int8 dynamic quantisation needs an fp32 graph; this one holds fp16 weights",
                                      hint="quantise the fp32 ONNX model instead")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser warns on the root logger
    folded = constants_as_initializers(model)
    if folded:  # the quantiser finds weights only among initializers (PaddlePaddle's exporter writes Constant nodes)
        src = out_dir / ".weights-as-initializers.onnx"
        onnx.save(model, str(src))
    try:
        # per-channel int8 weights; activations quantised at run time (no calibration data needed)
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail("int8 dynamic quantisation", exc) from exc
    finally:
        if folded:
            src.unlink(missing_ok=True)
    ctx.info["onnx->onnx-int8"] = {"weight_type": "QInt8", "per_channel": True, "activations": "dynamic uint8",
                                   "constants_as_initializers": folded}
    return out


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

    out = out_dir / "model.onnx"
    opts = ort.SessionOptions()
    # EXTENDED fusions stay portable across CPU machines; ALL would bake in layout
    # transforms for this machine's instruction set.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(out)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise _fail("onnxruntime optimisation", exc) from exc
    if not out.is_file():
        raise errors.ConversionError("onnxruntime wrote no optimised model")
    ctx.info["onnx->onnx-opt"] = {"level": "ORT_ENABLE_EXTENDED", "onnxruntime": ort.__version__}
    return out
