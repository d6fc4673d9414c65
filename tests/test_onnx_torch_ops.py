"""zoo.onnx_torch, op by op: one small hand-built ONNX graph per handler and
opset variant, run by onnxruntime and by the converted torch module on the same
inputs. Shape-computing graphs are also exported (torch.export) with a dynamic
batch and run at other batch sizes; unsupported ops and attribute values are
refused up front, all of them in one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo.converters.onnx_torch.ops import OPS

RNG = np.random.default_rng(0)


def f32(*shape, low=None, high=None):
    if low is not None:
        return RNG.uniform(low, high, shape).astype(np.float32)
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, np.int64)


def model_for(op, inputs, attrs=None, opset=18, consts=(), outputs=1, dynamic=()):
    """An ONNX model with one ``op`` node; ``inputs`` is [(name, array or None)], ``consts`` names initializers."""
    import onnx
    from onnx import helper, numpy_helper

    names = [n if a is not None else "" for n, a in inputs]
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, name=f"{op}_node", **(attrs or {}))
    graph_inputs, inits = [], []
    for name, array in inputs:
        if array is None:
            continue
        if name in consts:
            inits.append(numpy_helper.from_array(array, name))
        else:
            shape = ["batch" if (i == 0 and name in dynamic) else d for i, d in enumerate(array.shape)]
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), shape))
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_value_info(n, onnx.TypeProto()) for n in out_names],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def run_both(model, feeds, tmp_path: Path):
    import onnx
    import onnxruntime as ort
    import torch

    from zoo.converters.onnx_torch.module import build_module

    path = tmp_path / "op.onnx"
    onnx.save(model, str(path))
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    module = build_module(path)
    with torch.no_grad():
        got = module(*[torch.from_numpy(feeds[i.name]) for i in model.graph.input])
    return ref, [g.numpy() for g in got]


def assert_same(ref, got):
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert g.shape == r.shape, (g.shape, r.shape)
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, equal_nan=True)


X = f32(2, 3, 4)
POS = f32(2, 3, 4, low=0.1, high=3.0)
UNIT = f32(2, 3, 4, low=-0.9, high=0.9)
IMG = f32(2, 3, 9, 9)
BOOL_A, BOOL_B = RNG.random((2, 3)) > 0.5, RNG.random((2, 3)) > 0.5
INTS = np.array([[-7, 5, 9], [8, -3, 0]], np.int64)

# (id, op, inputs, attrs, opset, consts, outputs)
CASES = [
    *[(op, op, [("a", X), ("b", f32(3, 4))], {}, 18, (), 1) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min")],
    ("Div-int-trunc", "Div", [("a", INTS), ("b", np.array([2, -2, 4], np.int64))], {}, 18, (), 1),
    ("Pow", "Pow", [("a", POS), ("b", f32(4))], {}, 18, (), 1),
    ("Mod-int", "Mod", [("a", INTS), ("b", np.array([3, -2, 4], np.int64))], {}, 18, (), 1),
    ("Mod-fmod", "Mod", [("a", X), ("b", f32(3, 4, low=0.5, high=2))], {"fmod": 1}, 18, (), 1),
    *[(op, op, [("a", X), ("b", f32(3, 4))], {}, 18, (), 1) for op in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")],
    *[(op, op, [("a", BOOL_A), ("b", BOOL_B)], {}, 18, (), 1) for op in ("And", "Or", "Xor")],
    ("BitShift", "BitShift", [("a", np.array([1, 8, 64], np.uint8)), ("b", np.array([1, 2, 3], np.uint8))], {"direction": "RIGHT"}, 18, (), 1),
    ("Sum-3", "Sum", [("a", X), ("b", f32(4)), ("c", f32(3, 1))], {}, 18, (), 1),
    ("Mean-2", "Mean", [("a", X), ("b", f32(3, 4))], {}, 18, (), 1),
    ("Max-3", "Max", [("a", X), ("b", f32(4)), ("c", f32(3, 1))], {}, 18, (), 1),
    ("Where", "Where", [("c", RNG.random((3, 4)) > 0.5), ("a", X), ("b", f32(4))], {}, 18, (), 1),
    *[(op, op, [("x", X)], {}, 18, (), 1) for op in ("Abs", "Neg", "Exp", "Floor", "Ceil", "Sign", "Sin", "Cos", "Tan", "Atan",
                                                    "Sinh", "Cosh", "Asinh", "Erf", "Tanh", "Sigmoid", "Relu", "Softsign",
                                                    "HardSwish", "Mish", "Softplus", "Identity", "Round")],
    *[(op, op, [("x", POS)], {}, 18, (), 1) for op in ("Log", "Sqrt", "Reciprocal")],
    *[(op, op, [("x", UNIT)], {}, 18, (), 1) for op in ("Asin", "Acos", "Atanh")],
    ("Acosh", "Acosh", [("x", POS + 1)], {}, 18, (), 1),
    ("Not", "Not", [("x", BOOL_A)], {}, 18, (), 1),
    ("IsNaN", "IsNaN", [("x", np.array([1.0, np.nan, np.inf], np.float32))], {}, 18, (), 1),
    ("IsInf-pos", "IsInf", [("x", np.array([1.0, -np.inf, np.inf], np.float32))], {"detect_negative": 0}, 18, (), 1),
    ("LeakyRelu", "LeakyRelu", [("x", X)], {"alpha": 0.2}, 18, (), 1),
    ("Elu", "Elu", [("x", X)], {"alpha": 0.7}, 18, (), 1),
    ("Celu", "Celu", [("x", X)], {"alpha": 1.3}, 18, (), 1),
    ("Selu", "Selu", [("x", X)], {}, 18, (), 1),
    ("ThresholdedRelu", "ThresholdedRelu", [("x", X)], {"alpha": 0.3}, 18, (), 1),
    ("HardSigmoid", "HardSigmoid", [("x", X)], {"alpha": 0.3, "beta": 0.4}, 18, (), 1),
    ("PRelu", "PRelu", [("x", X), ("s", f32(3, 1))], {}, 18, ("s",), 1),
    ("Gelu", "Gelu", [("x", X)], {}, 20, (), 1),
    ("Gelu-tanh", "Gelu", [("x", X)], {"approximate": "tanh"}, 20, (), 1),
    ("Clip-10-attrs", "Clip", [("x", X)], {"min": -0.5, "max": 0.5}, 10, (), 1),
    ("Clip-13", "Clip", [("x", X), ("lo", np.array(-0.3, np.float32)), ("hi", np.array(0.6, np.float32))], {}, 13, ("lo", "hi"), 1),
    ("Clip-13-min-only", "Clip", [("x", X), ("lo", np.array(0.1, np.float32))], {}, 13, ("lo",), 1),
    ("Cast-int32", "Cast", [("x", X * 4)], {"to": 6}, 18, (), 1),
    ("Cast-fp16", "Cast", [("x", X)], {"to": 10}, 18, (), 1),
    ("Cast-bool", "Cast", [("x", np.round(X))], {"to": 9}, 18, (), 1),
    ("CastLike", "CastLike", [("x", X * 4), ("like", np.zeros(1, np.int64))], {}, 18, (), 1),
    # shapes and data movement
    ("Shape", "Shape", [("x", X)], {}, 13, (), 1),
    ("Shape-start-end", "Shape", [("x", X)], {"start": 1, "end": -1}, 15, (), 1),
    ("Size", "Size", [("x", X)], {}, 18, (), 1),
    ("Reshape-0-minus1", "Reshape", [("x", X), ("s", i64(0, -1))], {}, 18, ("s",), 1),
    ("Reshape-allowzero", "Reshape", [("x", X), ("s", i64(2, 12))], {"allowzero": 1}, 18, ("s",), 1),
    *[(f"Flatten-{a}", "Flatten", [("x", X)], {"axis": a}, 18, (), 1) for a in (0, 1, 2, 3, -1)],
    ("Squeeze-11", "Squeeze", [("x", f32(2, 1, 3, 1))], {"axes": [1, -1]}, 11, (), 1),
    ("Squeeze-13", "Squeeze", [("x", f32(2, 1, 3, 1)), ("axes", i64(1))], {}, 13, ("axes",), 1),
    ("Squeeze-all", "Squeeze", [("x", f32(2, 1, 3, 1))], {}, 13, (), 1),
    ("Unsqueeze-11", "Unsqueeze", [("x", X)], {"axes": [0, 4]}, 11, (), 1),
    ("Unsqueeze-13", "Unsqueeze", [("x", X), ("axes", i64(-1, 1))], {}, 13, ("axes",), 1),
    ("Transpose", "Transpose", [("x", X)], {"perm": [2, 0, 1]}, 18, (), 1),
    ("Transpose-default", "Transpose", [("x", X)], {}, 18, (), 1),
    ("Concat", "Concat", [("a", X), ("b", f32(2, 1, 4))], {"axis": -2}, 18, (), 1),
    ("Split-11", "Split", [("x", f32(2, 6))], {"axis": 1, "split": [1, 2, 3]}, 11, (), 3),
    ("Split-13", "Split", [("x", f32(2, 6)), ("s", i64(4, 2))], {"axis": 1}, 13, ("s",), 2),
    ("Split-18-uneven", "Split", [("x", f32(7, 2))], {"num_outputs": 3}, 18, (), 3),
    ("Slice-9-attrs", "Slice", [("x", X)], {"starts": [1], "ends": [1000], "axes": [2]}, 9, (), 1),
    ("Slice-13", "Slice", [("x", X), ("s", i64(0, 1)), ("e", i64(-1, 3)), ("a", i64(1, 2)), ("st", i64(1, 2))], {}, 13,
     ("s", "e", "a", "st"), 1),
    ("Slice-negative-step", "Slice", [("x", X), ("s", i64(-1)), ("e", i64(-(2**63))), ("a", i64(2)), ("st", i64(-2))], {},
     13, ("s", "e", "a", "st"), 1),
    ("Gather-0", "Gather", [("x", f32(5, 3)), ("i", np.array([[0, 4], [-1, 2]], np.int64))], {}, 13, ("i",), 1),
    ("Gather-1-scalar", "Gather", [("x", X), ("i", np.array(-2, np.int64))], {"axis": 1}, 13, ("i",), 1),
    ("Gather-runtime-indices", "Gather", [("x", f32(5, 3)), ("i", np.array([3, -5, 1], np.int64))], {"axis": 0}, 13, (), 1),
    ("GatherElements", "GatherElements", [("x", X), ("i", RNG.integers(-3, 3, (2, 2, 4)))], {"axis": 1}, 13, (), 1),
    ("GatherND", "GatherND", [("x", X), ("i", np.array([[0, 1], [1, -1]], np.int64))], {}, 13, (), 1),
    ("GatherND-batch", "GatherND", [("x", X), ("i", np.array([[[2]], [[0]]], np.int64))], {"batch_dims": 1}, 13, (), 1),
    ("ScatterElements", "ScatterElements", [("x", X), ("i", np.array([[[0, 1, 2, 0]], [[2, 2, 1, 0]]], np.int64)),
                                            ("u", f32(2, 1, 4))], {"axis": 1}, 18, (), 1),
    ("ScatterElements-add", "ScatterElements", [("x", X), ("i", np.array([[[0, 0, 2, 0]], [[2, 2, 1, 0]]], np.int64)),
                                                ("u", f32(2, 1, 4))], {"axis": 1, "reduction": "add"}, 18, (), 1),
    ("ScatterND", "ScatterND", [("x", X), ("i", np.array([[0, 1], [1, 2]], np.int64)), ("u", f32(2, 4))], {}, 18, (), 1),
    ("ScatterND-add", "ScatterND", [("x", X), ("i", np.array([[0, 1], [0, 1]], np.int64)), ("u", f32(2, 4))],
     {"reduction": "add"}, 18, (), 1),
    ("Expand", "Expand", [("x", f32(3, 1)), ("s", i64(2, 1, 4))], {}, 18, ("s",), 1),
    ("Tile", "Tile", [("x", f32(2, 3)), ("r", i64(2, 3))], {}, 18, ("r",), 1),
    ("ConstantOfShape", "ConstantOfShape", [("s", i64(2, 3))], {}, 18, ("s",), 1),
    ("Range-int", "Range", [("a", np.array(2, np.int64)), ("b", np.array(11, np.int64)), ("d", np.array(3, np.int64))], {}, 18,
     ("a", "b", "d"), 1),
    ("Range-float", "Range", [("a", np.array(0.5, np.float32)), ("b", np.array(3, np.float32)), ("d", np.array(0.7, np.float32))],
     {}, 18, ("a", "b", "d"), 1),
    ("Pad-10-attrs", "Pad", [("x", X)], {"pads": [0, 1, 2, 0, 0, 1], "value": 1.5}, 10, (), 1),
    ("Pad-constant", "Pad", [("x", X), ("p", i64(0, 1, 2, 0, 0, 1)), ("v", np.array(0.5, np.float32))], {}, 13, ("p", "v"), 1),
    ("Pad-reflect", "Pad", [("x", IMG), ("p", i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "reflect"}, 13, ("p",), 1),
    ("Pad-edge", "Pad", [("x", IMG), ("p", i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "edge"}, 13, ("p",), 1),
    ("Pad-18-axes", "Pad", [("x", IMG), ("p", i64(1, 2, 3, 0)), ("v", None), ("a", i64(-1, 2))], {}, 18, ("p", "a"), 1),
    ("Pad-19-wrap", "Pad", [("x", IMG), ("p", i64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "wrap"}, 19, ("p",), 1),
    ("Dropout", "Dropout", [("x", X)], {}, 13, (), 1),
    ("Trilu-upper", "Trilu", [("x", f32(2, 4, 5)), ("k", np.array(1, np.int64))], {}, 14, ("k",), 1),
    ("Trilu-lower", "Trilu", [("x", f32(4, 5))], {"upper": 0}, 14, (), 1),
    ("DepthToSpace-DCR", "DepthToSpace", [("x", f32(1, 8, 2, 3))], {"blocksize": 2}, 13, (), 1),
    ("DepthToSpace-CRD", "DepthToSpace", [("x", f32(1, 8, 2, 3))], {"blocksize": 2, "mode": "CRD"}, 13, (), 1),
    ("SpaceToDepth", "SpaceToDepth", [("x", f32(1, 2, 4, 6))], {"blocksize": 2}, 13, (), 1),
    ("OneHot", "OneHot", [("i", np.array([[0, 2], [-1, 1]], np.int64)), ("d", np.array(3, np.int64)),
                          ("v", np.array([0.0, 5.0], np.float32))], {"axis": 1}, 11, ("d", "v"), 1),
    # reductions, softmax family, arg/top-k, products
    ("ReduceSum-11-attr", "ReduceSum", [("x", X)], {"axes": [1], "keepdims": 0}, 11, (), 1),
    ("ReduceSum-13-input", "ReduceSum", [("x", X), ("a", i64(-1, 0))], {}, 13, ("a",), 1),
    ("ReduceMean-13-attr", "ReduceMean", [("x", X)], {"axes": [2]}, 13, (), 1),
    ("ReduceMean-18-input", "ReduceMean", [("x", X), ("a", i64(1))], {"keepdims": 0}, 18, ("a",), 1),
    ("ReduceMean-18-all", "ReduceMean", [("x", X)], {}, 18, (), 1),
    ("ReduceMean-18-noop", "ReduceMean", [("x", X)], {"noop_with_empty_axes": 1}, 18, (), 1),
    *[(f"{op}-18", op, [("x", POS), ("a", i64(0, 2))], {}, 18, ("a",), 1)
      for op in ("ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
                 "ReduceLogSumExp")],
    ("ReduceMax-13-attr", "ReduceMax", [("x", X)], {"axes": [0, 1], "keepdims": 0}, 13, (), 1),
    ("Softmax-11-flatten", "Softmax", [("x", X)], {"axis": 1}, 11, (), 1),
    ("Softmax-13", "Softmax", [("x", X)], {"axis": 1}, 13, (), 1),
    ("LogSoftmax-13", "LogSoftmax", [("x", X)], {}, 13, (), 1),
    ("LogSoftmax-11", "LogSoftmax", [("x", X)], {}, 11, (), 1),
    ("Hardmax-13", "Hardmax", [("x", X)], {"axis": 1}, 13, (), 1),
    ("ArgMax", "ArgMax", [("x", X)], {"axis": 1}, 13, (), 1),
    ("ArgMin-last", "ArgMin", [("x", np.array([[1, 0, 0, 2]], np.float32))], {"axis": 1, "keepdims": 0,
                                                                              "select_last_index": 1}, 13, (), 1),
    ("TopK", "TopK", [("x", X), ("k", i64(2))], {"axis": 1}, 11, ("k",), 2),
    ("TopK-smallest", "TopK", [("x", X), ("k", i64(3))], {"largest": 0}, 11, ("k",), 2),
    ("CumSum", "CumSum", [("x", X), ("a", np.array(1, np.int64))], {}, 14, ("a",), 1),
    ("CumSum-exclusive-reverse", "CumSum", [("x", X), ("a", np.array(-1, np.int64))], {"exclusive": 1, "reverse": 1}, 14,
     ("a",), 1),
    ("MatMul", "MatMul", [("a", X), ("b", f32(4, 5))], {}, 13, ("b",), 1),
    ("Gemm", "Gemm", [("a", f32(4, 3)), ("b", f32(5, 4)), ("c", f32(5))], {"transA": 1, "transB": 1, "alpha": 0.5,
                                                                           "beta": 2.0}, 13, ("b", "c"), 1),
    ("Gemm-no-c", "Gemm", [("a", f32(3, 4)), ("b", f32(4, 5))], {}, 13, (), 1),
    ("Einsum", "Einsum", [("a", X), ("b", f32(4, 5))], {"equation": "bij,jk->bik"}, 13, (), 1),
]
# convolutions, pooling, normalisation, resizing
W = f32(4, 3, 3, 3)
CASES += [
    ("Conv", "Conv", [("x", IMG), ("w", W), ("b", f32(4))], {"pads": [1, 1, 1, 1]}, 13, ("w", "b"), 1),
    ("Conv-asym-stride-dil", "Conv", [("x", IMG), ("w", W)], {"pads": [0, 1, 2, 0], "strides": [2, 1], "dilations": [1, 2]},
     13, ("w",), 1),
    ("Conv-same-upper", "Conv", [("x", IMG), ("w", W)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 13, ("w",), 1),
    ("Conv-same-lower", "Conv", [("x", IMG), ("w", f32(4, 3, 2, 2))], {"auto_pad": "SAME_LOWER"}, 13, ("w",), 1),
    ("Conv-valid-group", "Conv", [("x", f32(2, 4, 7, 7)), ("w", f32(4, 2, 3, 3))], {"auto_pad": "VALID", "group": 2}, 13,
     ("w",), 1),
    ("Conv-1d", "Conv", [("x", f32(2, 3, 10)), ("w", f32(5, 3, 3))], {"pads": [2, 0]}, 13, ("w",), 1),
    ("Conv-3d", "Conv", [("x", f32(1, 2, 5, 5, 5)), ("w", f32(3, 2, 3, 3, 3))], {"strides": [2, 1, 1]}, 13, ("w",), 1),
    ("ConvTranspose", "ConvTranspose", [("x", IMG), ("w", f32(3, 2, 3, 3)), ("b", f32(2))],
     {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}, 13, ("w", "b"), 1),
    ("ConvTranspose-group-dil", "ConvTranspose", [("x", f32(1, 4, 5, 5)), ("w", f32(4, 1, 3, 3))],
     {"group": 2, "dilations": [2, 1]}, 13, ("w",), 1),
    ("ConvTranspose-output-shape", "ConvTranspose", [("x", IMG), ("w", f32(3, 2, 3, 3))],
     {"strides": [2, 2], "output_shape": [20, 19]}, 13, ("w",), 1),
    *[(f"ConvTranspose-output-shape-{i}", "ConvTranspose", [("x", IMG), ("w", f32(3, 2, 3, 3))], {"strides": [2, 2], **a},
       13, ("w",), 1) for i, a in enumerate([{"output_shape": [18, 17]}, {"output_shape": [18, 20], "auto_pad": "SAME_UPPER"},
                                             {"output_shape": [17, 20], "auto_pad": "SAME_LOWER"},
                                             {"output_shape": [18, 18], "output_padding": [1, 1]}])],
    ("ConvTranspose-same-lower", "ConvTranspose", [("x", IMG), ("w", f32(3, 2, 3, 3))],
     {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, 13, ("w",), 1),
    ("ConvTranspose-same-upper", "ConvTranspose", [("x", IMG), ("w", f32(3, 2, 3, 3))],
     {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 13, ("w",), 1),
    ("MaxPool", "MaxPool", [("x", IMG)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 12, (), 1),
    ("MaxPool-asym-ceil-dil", "MaxPool", [("x", IMG)], {"kernel_shape": [2, 3], "pads": [0, 2, 1, 0], "strides": [2, 2],
                                                          "ceil_mode": 1, "dilations": [2, 1]}, 12, (), 1),
    ("MaxPool-same-upper", "MaxPool", [("x", IMG)], {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, 12,
     (), 1),
    ("MaxPool-1d", "MaxPool", [("x", f32(2, 3, 10))], {"kernel_shape": [3]}, 12, (), 1),
    ("AveragePool-exclude-pad", "AveragePool", [("x", IMG)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
     19, (), 1),
    ("AveragePool-include-pad", "AveragePool", [("x", IMG)], {"kernel_shape": [3, 3], "pads": [1, 0, 2, 1],
                                                               "count_include_pad": 1}, 19, (), 1),
    ("AveragePool-ceil", "AveragePool", [("x", IMG)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, 19, (), 1),
    ("GlobalAveragePool", "GlobalAveragePool", [("x", IMG)], {}, 13, (), 1),
    ("GlobalMaxPool", "GlobalMaxPool", [("x", IMG)], {}, 13, (), 1),
    ("BatchNormalization", "BatchNormalization", [("x", IMG), ("s", f32(3)), ("b", f32(3)), ("m", f32(3)),
                                                  ("v", f32(3, low=0.5, high=2))], {"epsilon": 1e-3}, 15, ("s", "b", "m", "v"), 1),
    ("InstanceNormalization", "InstanceNormalization", [("x", IMG), ("s", f32(3)), ("b", f32(3))], {}, 13, ("s", "b"), 1),
    ("LayerNormalization", "LayerNormalization", [("x", X), ("s", f32(4)), ("b", f32(4))], {"epsilon": 1e-6}, 17, ("s", "b"), 1),
    ("LayerNormalization-axis1-no-bias", "LayerNormalization", [("x", X), ("s", f32(3, 4))], {"axis": 1}, 17, ("s",), 1),
    ("LayerNormalization-3-outputs", "LayerNormalization", [("x", X), ("s", f32(4))], {}, 17, ("s",), 3),
    ("GroupNormalization-18", "GroupNormalization", [("x", f32(2, 4, 3, 3)), ("s", f32(2)), ("b", f32(2))],
     {"num_groups": 2}, 18, ("s", "b"), 1),
    ("GroupNormalization-21", "GroupNormalization", [("x", f32(2, 4, 3, 3)), ("s", f32(4)), ("b", f32(4))],
     {"num_groups": 2}, 21, ("s", "b"), 1),
    ("LRN", "LRN", [("x", IMG)], {"size": 3, "alpha": 1e-3, "beta": 0.7, "bias": 1.5}, 13, (), 1),
    ("LpNormalization", "LpNormalization", [("x", X)], {"axis": 1, "p": 1}, 13, (), 1),
    ("Resize-nearest-asymmetric", "Resize", [("x", IMG), ("r", None), ("s", np.array([1, 1, 2, 1.5], np.float32))],
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, 13, ("s",), 1),
    ("Resize-nearest-half-pixel", "Resize", [("x", IMG), ("r", None), ("s", None), ("z", i64(2, 3, 14, 5))],
     {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}, 13, ("z",), 1),
    ("Resize-nearest-default", "Resize", [("x", IMG), ("r", None), ("s", np.array([1, 1, 2, 1.5], np.float32))],
     {"mode": "nearest"}, 13, ("s",), 1),  # half_pixel + round_prefer_floor: ONNX's defaults, no torch mode
    ("Resize-nearest-default-down", "Resize", [("x", IMG), ("r", None), ("s", None), ("z", i64(2, 3, 3, 4))],
     {"mode": "nearest"}, 13, ("z",), 1),
    ("Resize-nearest-align-corners-ceil", "Resize", [("x", IMG), ("r", None), ("s", None), ("z", i64(2, 3, 11, 7))],
     {"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"}, 13, ("z",), 1),
    ("Resize-nearest-tf-half-pixel", "Resize", [("x", IMG), ("r", None), ("s", np.array([1, 1, 1.5, 2], np.float32))],
     {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"}, 13, ("s",), 1),
    ("Resize-linear-half-pixel", "Resize", [("x", IMG), ("r", None), ("s", np.array([1, 1, 2, 2], np.float32))],
     {"mode": "linear"}, 13, ("s",), 1),
    ("Resize-linear-sizes", "Resize", [("x", IMG), ("r", None), ("s", None), ("z", i64(2, 3, 5, 13))],
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, 13, ("z",), 1),
    ("Resize-linear-align-corners", "Resize", [("x", IMG), ("r", None), ("s", None), ("z", i64(2, 3, 17, 4))],
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13, ("z",), 1),
    ("Resize-cubic", "Resize", [("x", IMG), ("r", None), ("s", np.array([1, 1, 2, 2], np.float32))], {"mode": "cubic"}, 13,
     ("s",), 1),
    ("Resize-10", "Resize", [("x", IMG), ("s", np.array([1, 1, 2, 3], np.float32))], {"mode": "nearest"}, 10, ("s",), 1),
    ("Upsample-9", "Upsample", [("x", IMG), ("s", np.array([1, 1, 2, 2], np.float32))], {}, 9, ("s",), 1),
]

U8 = RNG.integers(0, 256, (2, 3, 6, 6)).astype(np.uint8)
CASES += [  # quantisation (onnxruntime's dynamic int8 graphs)
    ("QuantizeLinear-uint8", "QuantizeLinear", [("x", X * 3), ("s", np.array(0.02, np.float32)),
                                                ("z", np.array(128, np.uint8))], {}, 13, ("s", "z"), 1),
    ("QuantizeLinear-int8-axis", "QuantizeLinear", [("x", X * 3), ("s", np.array([0.02, 0.05, 0.1], np.float32)),
                                                    ("z", np.array([0, -3, 5], np.int8))], {"axis": 1}, 13, ("s", "z"), 1),
    ("DequantizeLinear", "DequantizeLinear", [("x", U8), ("s", np.array(0.03, np.float32)), ("z", np.array(100, np.uint8))], {},
     13, ("s", "z"), 1),
    ("DequantizeLinear-axis", "DequantizeLinear", [("x", U8.astype(np.int8)), ("s", np.array([0.1, 0.2, 0.3], np.float32))],
     {"axis": 1}, 13, ("s",), 1),
    ("DynamicQuantizeLinear", "DynamicQuantizeLinear", [("x", X)], {}, 11, (), 3),
    ("DynamicQuantizeLinear-positive", "DynamicQuantizeLinear", [("x", POS)], {}, 11, (), 3),
    ("MatMulInteger", "MatMulInteger", [("a", U8[0, 0]), ("b", RNG.integers(-128, 128, (6, 4)).astype(np.int8)),
                                        ("az", np.array(7, np.uint8)), ("bz", np.array([1, -2, 0, 3], np.int8))], {}, 10,
     ("b", "bz"), 1),
    ("ConvInteger", "ConvInteger", [("x", U8), ("w", RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)),
                                    ("xz", np.array(9, np.uint8))], {"pads": [1, 1, 1, 1]}, 10, ("w",), 1),
]


@pytest.mark.parametrize("op, inputs, attrs, opset, consts, outputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(tmp_path, op, inputs, attrs, opset, consts, outputs):
    model = model_for(op, inputs, attrs, opset, consts, outputs)
    feeds = {n: a for n, a in inputs if a is not None and n not in consts}
    ref, got = run_both(model, feeds, tmp_path)
    assert_same(ref, got)


def test_every_registered_op_has_a_case():
    covered = {c[1] for c in CASES} | {"Constant"}
    assert set(OPS) - covered <= {"Scatter"}, f"ops without a test case: {sorted(set(OPS) - covered)}"


def _shape_graph(opset: int = 18):
    """x [batch, 3, 4] -> Reshape(x, [Shape(x)[0], -1]) -> Expand to [batch, 2, 12] with a Range-built
    offset: the Shape -> Gather -> Unsqueeze -> Concat chain exporters write for view(b, -1)."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Shape", ["flat"], ["fshape"], start=1),
        helper.make_node("Squeeze", ["fshape"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["offset"]),
        helper.make_node("Cast", ["offset"], ["offset_f"], to=1),
        helper.make_node("Add", ["flat", "offset_f"], ["shifted"]),
        helper.make_node("Concat", ["b1", "two", "twelve"], ["big"], axis=0),
        helper.make_node("Unsqueeze", ["shifted", "axes1"], ["u"]),
        helper.make_node("Expand", ["u", "big"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", 0), ("one", 1), ("axes0", [0]), ("axes1", [1]), ("minus1", [-1]), ("two", [2]), ("twelve", [12]))]
    graph = helper.make_graph(nodes, "shapes", [helper.make_tensor_value_info("x", 1, ["batch", 3, 4])],
                              [helper.make_tensor_value_info("y", 1, ["batch", 2, 12])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_shape_subgraph_stays_dynamic_through_export(tmp_path):
    import onnx
    import onnxruntime as ort
    import torch

    from zoo.converters.loaders.pt2_archive import load_program
    from zoo.converters.onnx_torch.module import export_pt2

    src, out = tmp_path / "shapes.onnx", tmp_path / "shapes.pt2"
    onnx.save(_shape_graph(), str(src))
    info = export_pt2(src, out)
    assert not isinstance(info["exported_shapes"]["x"][0], int)  # the batch dim stayed symbolic
    program, signature = load_program(out)
    assert signature["inputs"][0]["shape"] == ["batch", 3, 4] and signature["converter"] == "zoo.onnx_torch"
    module = program.module()
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 5):
        x = RNG.standard_normal((batch, 3, 4)).astype(np.float32)
        with torch.no_grad():
            got = module(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(got, session.run(None, {"x": x})[0], rtol=1e-6, atol=1e-6)


def _with_extra_node(model, op_type, domain="", name=None, **attrs):
    from onnx import helper

    model.graph.node.append(helper.make_node(op_type, ["y0"], [f"extra_{op_type}"], name=name or f"my_{op_type}",
                                             domain=domain, **attrs))
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


@pytest.mark.parametrize(
    "op, attrs, opset, needle",
    [
        ("Resize", {"mode": "cubic", "cubic_coeff_a": -0.5}, 13, "cubic_coeff_a"),
        ("Resize", {"mode": "linear", "antialias": 1}, 18, "antialias"),
        ("Resize", {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, 13, "tf_crop_and_resize"),
        ("BatchNormalization", {"training_mode": 1}, 15, "training_mode=1"),
        ("Mod", {"fmod": 2}, 13, "fmod=2"),
        ("Cast", {"to": 8}, 13, "to=8"),
        ("Upsample", {"mode": "linear"}, 9, "linear"),
        ("Pad", {"mode": "mirror"}, 13, "mode='mirror'"),
        ("Gelu", {"approximate": "erf"}, 20, "approximate='erf'"),
    ],
)
def test_unsupported_attribute_values_are_named(op, attrs, opset, needle):
    from onnx import helper

    from zoo.converters.onnx_torch.module import unsupported_nodes

    node = helper.make_node(op, ["x"], ["y"], name="the_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1])], [helper.make_tensor_value_info("y", 1, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    bad = unsupported_nodes(model)
    assert len(bad) == 1 and bad[0]["op"] == op and bad[0]["node"] == "the_node" and needle in bad[0]["reason"], bad


def test_every_unsupported_node_is_listed_in_one_error(tmp_path):
    from onnx import helper

    from zoo import errors
    from zoo.converters.onnx_torch.module import build_module

    model = model_for("Relu", [("x", X)])
    _with_extra_node(model, "FusedConv", domain="com.microsoft", name="fused")
    _with_extra_node(model, "NonZero", name="nz")
    _with_extra_node(model, "MaxPool", name="pool_with_indices", kernel_shape=[1])
    model.graph.node[-1].output.append("indices")
    sub = helper.make_graph([], "branch", [], [])
    model.graph.node.append(helper.make_node("If", ["y0"], ["branch_out"], name="cond", then_branch=sub, else_branch=sub))
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(errors.ConversionError) as info:
        build_module(path)
    message = info.value.message
    assert "zoo.onnx_torch" in message and "4 unsupported node(s)" in message
    for needle in ("FusedConv (operator domain 'com.microsoft'): fused", "NonZero (no converter for this op): nz",
                   "MaxPool (the Indices output): pool_with_indices", "If (subgraphs (control flow)): cond"):
        assert needle in message, message
    assert {b["node"] for b in info.value.details["unsupported"]} == {"fused", "nz", "pool_with_indices", "cond"}


def test_nodes_out_of_order_run_in_dependency_order(tmp_path):
    """ONNX requires sorted nodes, but tools (onnxruntime's fp16 converter) append some: sort, or say why not."""
    from onnx import helper

    from zoo import errors
    from zoo.converters.onnx_torch.module import build_module

    model = model_for("Relu", [("x", X)])
    model.graph.node.insert(0, helper.make_node("Neg", ["y0"], ["z"], name="late"))
    model.graph.output[0].name = "z"
    ref, got = run_both(model, {"x": X}, tmp_path)
    assert_same(ref, got)
    model.graph.node.append(helper.make_node("Abs", ["nowhere"], ["w"], name="dangling"))
    path = tmp_path / "dangling.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(errors.ConversionError, match="nothing produces .*nowhere"):
        build_module(path)


def test_data_dependent_shapes_fail_the_export_naming_the_node(tmp_path):
    """A Reshape whose target shape is data (a graph input) cannot be traced symbolically."""
    import onnx
    from onnx import helper

    from zoo import errors
    from zoo.converters.onnx_torch.module import export_pt2

    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_by_data")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, ["batch", 6]),
                                            helper.make_tensor_value_info("shape", 7, [2])],
                              [helper.make_tensor_value_info("y", 1, None)])
    src = tmp_path / "data_shape.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(src))
    with pytest.raises(errors.ConversionError) as info:
        export_pt2(src, tmp_path / "out.pt2")
    assert "reshape_by_data" in info.value.message and "zoo.onnx_torch" in info.value.message
    assert not (tmp_path / "out.pt2").exists()
