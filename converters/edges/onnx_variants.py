"""ONNX -> ONNX variants: fp16 weights and compute, int8 dynamic quantisation, int4 weight-only
quantisation (decoders), and an onnxruntime-optimised graph. Inputs and outputs keep their names and
fp32 types, so every variant is checked against the source model on the same inputs, at its own dtype's
tolerance. A source with external data (``model.onnx`` + ``model.onnx.data``) is read with its data, and
each variant is written in the same layout when its own weights exceed ``EdgeContext.external_data_bytes``
(``edges/onnx_external.py``): no variant ever serialises one proto over protobuf's 2 GiB."""

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
    "int4": "the fp32 ONNX model is unaffected: use it, or try onnx-int8 or onnx-fp16; report the model to zoo "
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


def load_with_shapes(src: Path) -> Any:
    """The ONNX model at ``src`` with its external data and inferred shapes. Shapes are inferred on the graph
    before the weights are read in: ``onnx.shape_inference.infer_shapes`` serialises the model, which a
    model over 2 GiB cannot be."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src), load_external_data=False))
    load_external_data_for_model(model, str(src.parent))
    return model


@edge("onnx", "onnx-fp16", name="onnxruntime.transformers.float16", dtype="float16", primary="model.onnx",
       tools=("onnx", "onnxruntime"), pairs=True)
def onnx_to_fp16(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from zoo.converters.edges.onnx_external import save_model

    outside = False
    for one, out in _outputs(src, out_dir, ctx):
        try:
            model = convert_float_to_float16(load_with_shapes(one), keep_io_types=True, disable_shape_infer=True)
            outside = save_model(model, out, ctx.external_data_bytes) or outside
        except Exception as exc:  # noqa: BLE001
            raise _fail("fp16 conversion", "fp16", exc) from exc
    ctx.info["onnx->onnx-fp16"] = {"keep_io_types": True, "external_data": outside}
    return out


@edge("onnx", "onnx-int8", name="onnxruntime.quantization", dtype="int8", primary="model.onnx",
       tools=("onnx", "onnxruntime"), pairs=True)
def onnx_to_int8(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    folded, outside = 0, False
    for one, out in _outputs(src, out_dir, ctx):
        moved, written_outside = _int8_file(one, out, out_dir, ctx)
        folded, outside = folded + moved, outside or written_outside
    ctx.info["onnx->onnx-int8"] = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True,
                                   "activations": "dynamic uint8",
                                   "constants_as_initializers": folded, "external_data": outside}
    return out


def _int8_file(src: Path, out: Path, out_dir: Path, ctx: EdgeContext) -> tuple[int, bool]:
    """Quantise one graph into ``out``: (how many Constant nodes were made initializers, whether external
    data was written)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from zoo.converters.edges.onnx_external import consolidate, external, save_model

    model = onnx.load(str(src), load_external_data=False)
    large = external(model, ctx.external_data_bytes)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise errors.UnsupportedError("int8 dynamic quantisation needs an fp32 graph; this one holds fp16 weights",
                                      hint="quantise the fp32 ONNX model instead")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the quantiser warns on the root logger
    scratch = out_dir / ".unmerged"  # working copies; removed, since the edge's directory is what gets published
    folded = constants_as_initializers(model)
    if folded:  # the quantiser finds weights only among initializers (PaddlePaddle's exporter writes Constant nodes)
        scratch.mkdir(exist_ok=True)
        full = onnx.load(str(src))  # the moved constants are inline; the other tensors are read in
        constants_as_initializers(full)
        src = scratch / "weights-as-initializers.onnx"
        save_model(full, src, ctx.external_data_bytes)
    try:
        source = src
        if any(n.op_type == "Identity" for n in model.graph.node):
            full = onnx.load(str(src))  # with its external data: the copies need the tensors' bytes
            unmerged = unmerge_initializers(full)
            if unmerged:
                scratch.mkdir(exist_ok=True)
                source = scratch / "model.onnx"
                save_model(full, source, ctx.external_data_bytes)
                ctx.notes.append(f"int8: {unmerged} initializer(s) the exporter had merged through Identity nodes "
                                 "were given their own copies for the quantiser")
        # per-channel int8 weights; activations quantised at run time (no calibration data needed). Weights in
        # 7 bits (reduce_range): x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) sum u8 x s8 pairs into int16
        # and saturate with full-range weights, so the same file would be accurate on one machine and wrong on
        # another (measured here, AVX2: a BERT's hidden states off by 0.65 at int8's 0.1 bound)
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         use_external_data_format=large)
        outside = consolidate(out, ctx.external_data_bytes)  # the int8 weights are a quarter: maybe one file now
    except Exception as exc:  # noqa: BLE001
        raise _fail("int8 dynamic quantisation", "int8", exc) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folded, outside


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


@edge("onnx", "onnx-opt", name="onnxruntime graph optimizer", primary="model.onnx", tools=("onnx", "onnxruntime"),
      pairs=True)
def onnx_to_optimized(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    import onnx
    import onnxruntime as ort

    from zoo.converters.edges.onnx_external import INLINE_BELOW, consolidate, data_name, external

    outside = False
    for one, out in _outputs(src, out_dir, ctx):
        opts = ort.SessionOptions()
        graph_only = onnx.load(str(one), load_external_data=False)
        if external(graph_only, ctx.external_data_bytes) or any(t.external_data for t in graph_only.graph.initializer):
            # onnxruntime writes the optimised graph's weights beside it (else it points back at the source's data
            # file); ``consolidate`` below inlines them when they are under the threshold
            opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", data_name(out))
            opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                          str(INLINE_BELOW))
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
        outside = consolidate(out, ctx.external_data_bytes) or outside
    ctx.info["onnx->onnx-opt"] = {"level": "ORT_ENABLE_EXTENDED", "onnxruntime": ort.__version__, "external_data": outside}
    return out


INT4_BLOCK = 32  # weights per scale along K: onnxruntime-genai's and llama.cpp's Q4_0 choice for small models


@edge("onnx", "onnx-int4", name="onnxruntime.quantization.matmul_nbits", dtype="int4", primary="model.onnx",
      tools=("onnx", "onnxruntime"), tasks=("text-generation",))
def onnx_to_int4(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    """Weight-only 4-bit quantisation of every MatMul with a constant weight (``com.microsoft.MatMulNBits``):
    symmetric int4 in blocks of ``INT4_BLOCK`` along K with one fp32 scale per block, activations and
    compute in fp32 (no ``accuracy_level``: the int8-activation kernels would add their own error). Embeddings
    (Gather) and everything else stay fp32. Decoders only (``tasks``): their check is greedy generation."""
    import logging

    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    from zoo.converters.edges.onnx_external import save_model

    out = out_dir / "model.onnx"
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    try:
        model = load_with_shapes(src)
        gemms = gemms_as_matmuls(model)
        quantizer = nbits.MatMulNBitsQuantizer(model, bits=4, block_size=INT4_BLOCK, is_symmetric=True,
                                               op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantized = quantizer.model.model
        count = sum(n.op_type == "MatMulNBits" for n in quantized.graph.node)
        if not count:
            raise errors.UnsupportedError("int4: the model has no MatMul with a constant weight to quantise",
                                          hint="onnx-int8 or onnx-fp16 make a smaller file of this model")
        outside = save_model(quantized, out, ctx.external_data_bytes)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _fail("int4 weight-only quantisation", "int4", exc) from exc
    ctx.info["onnx->onnx-int4"] = {"bits": 4, "block_size": INT4_BLOCK, "symmetric": True, "matmuls": count,
                                   "gemms_as_matmuls": gemms, "activations": "float32", "external_data": outside}
    return out


def gemms_as_matmuls(model: Any) -> int:
    """Rewrite each ``Gemm(A, B, C)`` of a constant 2-D ``B`` (alpha = beta = 1, A not transposed) as
    ``MatMul(A, B') + C``, in place, so the int4 quantiser (MatMul only) sees it: GPT-2's Conv1D layers and
    TorchScript's 2-D linear layers export as Gemm. Returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = inits.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) >= 2 else None
        if (weight is None or len(weight.dims) != 2 or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
                or attrs.get("beta", 1.0) != 1.0 or weight.data_type != onnx.TensorProto.FLOAT):
            nodes.append(node)
            continue
        if attrs.get("transB", 0):
            transposed = numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), f"{weight.name}__kn")
            model.graph.initializer.append(transposed)
            inits[transposed.name] = transposed
            b = transposed.name
        else:
            b = weight.name
        product = f"{node.output[0]}__matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], b], [product], name=f"{node.name}__matmul"))
        if product != node.output[0]:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}__bias"))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten
