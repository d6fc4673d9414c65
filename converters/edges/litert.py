"""LiteRT edges: PyTorch -> ``.tflite`` directly with litert-torch (Google's converter, formerly ai-edge-torch),
beside the onnx2tf route (``graph.routes`` says which is tried first), and ``.tflite`` -> dynamic-range int8 /
fp16-weight ``.tflite`` with ai-edge-quantizer.

litert-torch exports the module with ``torch.export`` at the example inputs, with the source's dynamic axes
(batch, sequence) as symbolic dimensions; on the ladder's static-shapes rung (``ctx.static_shapes``) it exports
exactly the example's shapes, and says so in the I/O contract (``ctx.info["torch->tflite"]["io_contract"]``):
the pipeline then checks parity on the input sets of that shape only. Its signature names inputs ``args_0..`` and outputs ``output_0..`` in the model's order, and
int64 inputs (token ids, masks) become int32: both are recorded in ``io_contract``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

FP16_OPS = ("FULLY_CONNECTED", "CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
QUANT_HINT = "the float .tflite model is unaffected: use it, or try onnx-int8 / onnx-fp16"


def require(module: str, extra: str) -> Any:
    """``module``, or MissingDependencyError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise errors.MissingDependencyError(f"{module} is needed for this conversion but is not installed",
                                            hint=f"pip install 'zoo-hub[{extra}]'") from exc


def io_contract(tm: Any, example: tuple, static: bool) -> dict[str, Any]:
    """How the ``.tflite`` file's inputs and outputs differ from the source's, said exactly."""
    inputs = []
    for i, (name, t) in enumerate(zip(tm.input_names, example)):
        dtype = str(t.dtype).removeprefix("torch.")
        axes = tm.dynamic_axes.get(name, {})
        shape = list(t.shape) if static else [axes.get(a, d) for a, d in enumerate(t.shape)]
        inputs.append({"name": name, "tflite_name": f"args_{i}", "shape": shape,
                       "dtype": "int32" if dtype == "int64" else dtype, "source_dtype": dtype})
    outputs = [{"name": n, "tflite_name": f"output_{i}"} for i, n in enumerate(tm.output_names)]
    differs = ["inputs and outputs are named args_N / output_N in the model's order"]
    if any(i["source_dtype"] == "int64" for i in inputs):
        differs.append("int64 inputs take int32 (LiteRT has no int64 inputs here)")
    if static:
        differs.append("static shapes: the file takes exactly the shapes above (dynamic axes export failed)")
    return {"layout": "as the PyTorch model (NCHW stays NCHW)", "shapes": "static" if static else "dynamic",
            "inputs": inputs, "outputs": outputs, "differs": differs}


def convert_litert(tm: Any, example: tuple, out: Path, *, seq_max: int | None, static: bool) -> None:
    """One litert-torch conversion of ``tm.module`` into ``out``."""
    import torch

    litert_torch = require("litert_torch", "litert")
    from zoo.converters.edges.jax_export import widened
    from zoo.converters.edges.torch_onnx import dynamic_shapes

    shapes = None if static else dynamic_shapes(tm, seq_max)
    example = tuple(example) if static else widened(tm, example)  # torch.export fixes a dynamic axis it sees at 1
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = litert_torch.convert(tm.module.eval(), example, dynamic_shapes=shapes)
        model.export(str(out))


@edge("torch", "tflite", name="litert-torch", primary="model.tflite", tools=("litert-torch", "torch", "litert-converter"),
      alternative=True, static_shapes=True, pairs=True)
def torch_to_tflite(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    if getattr(tm, "seq2seq", None) is not None:  # an encoder-decoder: encoder.tflite beside decoder.tflite, static
        return _pair_to_tflite(tm, out_dir, ctx)
    from zoo.versions import dist_versions

    out = out_dir / "model.tflite"
    info: dict[str, Any] = {"exporter": "litert-torch", "versions": dist_versions(("litert-torch", "litert-converter", "torch"))}
    static = ctx.static_shapes or not any(tm.dynamic_axes.get(n) for n in tm.input_names)
    try:
        convert_litert(tm, ctx.example, out, seq_max=ctx.seq_max, static=static)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - litert-torch fails in many ways (a missing lowering, export)
        out.unlink(missing_ok=True)
        raise errors.ConversionError(f"litert-torch could not convert the model with {'static' if static else 'dynamic'} "
                                     f"shapes: {errors.first_line(exc, typed=True)}", edge="torch->tflite",
                                     hint="zoo tries the other routes and rungs next; convert to onnx or pt2 if all fail") from exc
    info["io_contract"] = io_contract(tm, ctx.example, static)
    info["shapes"] = "static" if static else "dynamic"
    if static and ctx.static_shapes:
        ctx.notes.append(f"the .tflite file takes static shapes {[list(t.shape) for t in ctx.example]} "
                         "(no route converted the dynamic axes)")
    ctx.info["torch->tflite"] = info
    return out


def _pair_to_tflite(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    """An encoder-decoder: ``encoder.tflite`` beside ``decoder.tflite`` (the primary file), both static, the decoder
    without a self-attention cache (tasks/seq2seq_lite.py says how and why)."""
    import torch

    from zoo.converters.tasks import seq2seq_lite
    from zoo.versions import dist_versions

    litert_torch = require("litert_torch", "litert")
    pair = tm.seq2seq
    enc_example, dec_example = seq2seq_lite.examples(pair)
    made = seq2seq_lite.modules(pair)
    for part, module, example in (("encoder", made["encoder"], enc_example), ("decoder", made["decoder"], dec_example)):
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                litert_torch.convert(module.eval(), example).export(str(out_dir / seq2seq_lite.FILES[part]))
        except Exception as exc:  # noqa: BLE001 - litert-torch fails in many ways
            raise errors.ConversionError(f"litert-torch could not convert the {part}: {errors.first_line(exc, typed=True)}",
                                         edge="torch->tflite", hint="pull the model as onnx, pt2 or jax") from exc
    ctx.info["torch->tflite"] = {"exporter": "litert-torch", "files": dict(seq2seq_lite.FILES),
                                 "versions": dist_versions(("litert-torch", "litert-converter", "torch")),
                                 "io_contract": seq2seq_lite.io_contract(pair.contract, enc_example, dec_example),
                                 "shapes": "static"}
    return out_dir / seq2seq_lite.FILES["decoder"]


# --- .tflite -> quantised .tflite (ai-edge-quantizer) -------------------------------------------------------
def _quantize(src: Path, out: Path, kind: str) -> dict[str, Any]:
    quantizer = require("ai_edge_quantizer.quantizer", "litert")
    from ai_edge_quantizer import qtyping, recipe

    if kind == "int8":
        q = quantizer.Quantizer(str(src), recipe.dynamic_wi8_afp32())
        what = "dynamic-range: int8 per-channel weights, float32 activations quantised on the fly"
    else:
        q = quantizer.Quantizer(str(src))
        config = qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
        # not DEPTHWISE_CONV_2D: LiteRT's default (XNNPACK) delegate refuses a depthwise conv whose weights
        # come through a DEQUANTIZE (MobileNetV2: "failed to delegate DEPTHWISE_CONV_2D"); those stay float32
        for op in FP16_OPS:
            q.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                         algorithm_key=recipe.AlgorithmName.FLOAT_CASTING, op_config=config)
        what = f"fp16 weights of {', '.join(FP16_OPS)} (dequantised to float32 at load), float32 compute"
    with contextlib.redirect_stdout(io.StringIO()):
        q.quantize().export_model(str(out), overwrite=True)
    from zoo.versions import dist_version

    return {"quantization": what, "ai-edge-quantizer": dist_version("ai-edge-quantizer"),
            "ratio": round(out.stat().st_size / max(1, src.stat().st_size), 3)}


def _quantize_edge(kind: str, src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    files = (ctx.info.get("torch->tflite") or {}).get("files") or {}
    if src.name in files.values():  # an encoder-decoder's static pair (tasks/seq2seq_lite.py): both files, same names
        try:
            info = {name: _quantize(src.parent / name, out_dir / name, kind) for name in files.values()}
        except Exception as exc:  # noqa: BLE001
            raise errors.ConversionError(f"ai-edge-quantizer failed ({kind}): {errors.first_line(exc, typed=True)}",
                                         hint=QUANT_HINT) from exc
        ctx.info[f"tflite->tflite-{kind}"] = {**info[src.name], "files": dict(files), "per_file": info}
        return out_dir / src.name
    out = out_dir / "model.tflite"
    try:
        ctx.info[f"tflite->tflite-{kind}"] = _quantize(src, out, kind)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise errors.ConversionError(f"ai-edge-quantizer failed ({kind}): {errors.first_line(exc, typed=True)}", hint=QUANT_HINT) from exc
    return out


@edge("tflite", "tflite-int8", name="ai-edge-quantizer (dynamic int8)", dtype="int8", primary="model.tflite",
      tools=("ai-edge-quantizer",), pairs=True)
def tflite_to_int8(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    return _quantize_edge("int8", src, out_dir, ctx)


@edge("tflite", "tflite-fp16", name="ai-edge-quantizer (fp16 weights)", dtype="float16", primary="model.tflite",
      tools=("ai-edge-quantizer",), pairs=True)
def tflite_to_fp16(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    return _quantize_edge("fp16", src, out_dir, ctx)
