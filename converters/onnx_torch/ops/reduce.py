"""Reductions, the softmax family, arg/top-k, cumulative sums and matrix
products. Reductions take their axes from an attribute before opset 18 (13 for
ReduceSum) and from an input since, with ``noop_with_empty_axes``."""

from __future__ import annotations

import math
import operator
from functools import reduce as fold
from typing import Any

from zoo.converters.onnx_torch.ops.core import (
    NodeDef,
    Static,
    ints,
    normalize_axis,
    op,
    scalar,
    tensor,
)

_REDUCE_SINCE = {"ReduceSum": 13}  # the opset in which axes became an input; 18 for the others


def _reduce_axes(node: NodeDef, axes_input: Any, rank: int) -> list[int] | None:
    """Normalised axes; None means "no reduction" (noop_with_empty_axes and no axes)."""
    since = _REDUCE_SINCE.get(node.op_type, 18)
    axes = node.attr("axes") if node.opset < since else (ints(axes_input) if axes_input is not None else None)
    if not axes:
        return None if node.attr("noop_with_empty_axes", 0) and node.opset >= since else list(range(rank))
    return sorted(normalize_axis(int(a), rank) for a in axes)


def _reduce_static(node: NodeDef, x: Static) -> Static | None:
    fns = {"ReduceProd": operator.mul, "ReduceSum": operator.add}
    if node.op_type not in fns:
        return None
    keep = node.attr("keepdims", 1)
    return Static([fold(fns[node.op_type], x.values)], x.dtype, scalar=not keep)


def _torch_reduce(name: str, x: Any, axes: list[int], keep: bool) -> Any:
    import torch

    if name == "ReduceSum":
        return x.sum(dim=axes, keepdim=keep)
    if name == "ReduceMean":
        return x.mean(dim=axes, keepdim=keep)
    if name == "ReduceMax":
        return torch.amax(x, dim=axes, keepdim=keep)
    if name == "ReduceMin":
        return torch.amin(x, dim=axes, keepdim=keep)
    if name == "ReduceProd":
        for a in sorted(axes, reverse=True):
            x = x.prod(dim=a, keepdim=keep)
        return x
    if name == "ReduceL1":
        return x.abs().sum(dim=axes, keepdim=keep)
    if name == "ReduceL2":
        return (x * x).sum(dim=axes, keepdim=keep).sqrt()
    if name == "ReduceSumSquare":
        return (x * x).sum(dim=axes, keepdim=keep)
    if name == "ReduceLogSum":
        return x.sum(dim=axes, keepdim=keep).log()
    return torch.logsumexp(x, dim=axes, keepdim=keep)  # ReduceLogSumExp


@op("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare",
    "ReduceLogSum", "ReduceLogSumExp")
def reduce_(node: NodeDef, x: Any, axes_: Any = None) -> Any:
    if isinstance(x, Static):
        folded = _reduce_static(node, x)
        if folded is not None:
            return folded
    x = tensor(x)
    axes = _reduce_axes(node, axes_, x.ndim)
    if axes is None:
        return x
    if not axes:  # a scalar input
        return x
    return _torch_reduce(node.op_type, x, axes, bool(node.attr("keepdims", 1)))


def _softmax(node: NodeDef, x: Any, fn: Any) -> Any:
    x = tensor(x)
    if node.opset >= 13:
        return fn(x, normalize_axis(node.attr("axis", -1), x.ndim))
    axis = normalize_axis(node.attr("axis", 1), x.ndim)  # opset < 13: flatten to 2-D at axis
    shape = x.shape
    return fn(x.reshape(math.prod(shape[:axis]) if axis else 1, -1), 1).reshape(shape)


@op("Softmax")
def softmax(node: NodeDef, x: Any) -> Any:
    import torch

    return _softmax(node, x, torch.softmax)


@op("LogSoftmax")
def log_softmax(node: NodeDef, x: Any) -> Any:
    import torch

    return _softmax(node, x, torch.log_softmax)


@op("Hardmax")
def hardmax(node: NodeDef, x: Any) -> Any:
    import torch

    def fn(t: Any, axis: int) -> Any:
        return torch.nn.functional.one_hot(t.argmax(axis), t.shape[axis]).movedim(-1, axis).to(t.dtype)

    return _softmax(node, x, fn)


@op("ArgMax", "ArgMin")
def arg_extreme(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    axis = normalize_axis(node.attr("axis", 0), x.ndim)
    keep = bool(node.attr("keepdims", 1))
    fn = "argmax" if node.op_type == "ArgMax" else "argmin"
    if node.attr("select_last_index", 0):
        flipped = getattr(x.flip(axis), fn)(axis, keepdim=keep)
        return x.shape[axis] - 1 - flipped
    return getattr(x, fn)(axis, keepdim=keep)


@op("TopK")
def top_k(node: NodeDef, x: Any, k: Any = None) -> tuple:
    import torch

    x = tensor(x)
    count = node.attr("k") if node.opset < 10 else scalar(k)
    axis = normalize_axis(node.attr("axis", -1), x.ndim)
    values, indices = torch.topk(x, int(count) if isinstance(count, (int, float)) else count, dim=axis,
                                 largest=bool(node.attr("largest", 1)), sorted=True)
    return values, indices.to(torch.int64)


@op("CumSum")
def cum_sum(node: NodeDef, x: Any, axis_: Any) -> Any:
    x = tensor(x)
    axis = normalize_axis(int(scalar(axis_)), x.ndim)
    if node.attr("reverse", 0):
        x = x.flip(axis)
    out = x.cumsum(axis)
    if node.attr("exclusive", 0):
        out = out - x
    return out.flip(axis) if node.attr("reverse", 0) else out


@op("MatMul")
def matmul(node: NodeDef, a: Any, b: Any) -> Any:
    import torch

    return torch.matmul(tensor(a), tensor(b))


@op("Gemm")
def gemm(node: NodeDef, a: Any, b: Any, c: Any = None) -> Any:
    a, b = tensor(a), tensor(b)
    a = a.t() if node.attr("transA", 0) else a
    b = b.t() if node.attr("transB", 0) else b
    out = a @ b
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        c = tensor(c)
        out = out + (c * beta if beta != 1.0 else c)
    return out


@op("Einsum")
def einsum(node: NodeDef, *operands: Any) -> Any:
    import torch

    return torch.einsum(node.attr("equation"), *[tensor(o) for o in operands])
