"""Quantisation ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
MatMulInteger and ConvInteger, the ops in the ``onnx-int8`` files zoo writes
(onnxruntime's dynamic quantisation). Integer products are computed in float64,
exact for any realistic reduction size (|sum| < 2**53), then stored as int32,
as ONNX specifies; rounding is half to even, as onnxruntime's ``nearbyint``."""

from __future__ import annotations

from typing import Any

from zoo.converters.onnx_torch.ops.core import NodeDef, normalize_axis, op, tensor
from zoo.converters.onnx_torch.ops.nn import conv

_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


def _per_axis(param: Any, x: Any, axis: int) -> Any:
    """A per-tensor (scalar) or per-axis (1-D) scale or zero point, shaped to broadcast against ``x``."""
    if param.ndim == 0 or param.numel() == 1:
        return param.reshape(())
    shape = [1] * x.ndim
    shape[normalize_axis(axis, x.ndim)] = -1
    return param.reshape(shape)


def _check_block(node: NodeDef) -> str | None:
    return "blocked quantisation (block_size)" if node.attr("block_size", 0) else None


@op("QuantizeLinear", check=_check_block)
def quantize_linear(node: NodeDef, x: Any, scale: Any, zero_point: Any = None) -> Any:
    import torch

    x, scale = tensor(x), tensor(scale)
    axis = node.attr("axis", 1)
    dtype = tensor(zero_point).dtype if zero_point is not None else torch.uint8
    low, high = _RANGES[str(dtype).removeprefix("torch.")]
    zp = _per_axis(tensor(zero_point), x, axis).to(torch.float32) if zero_point is not None else 0.0
    q = torch.round(x.to(torch.float32) / _per_axis(scale, x, axis).to(torch.float32)) + zp
    return q.clamp(low, high).to(dtype)


@op("DequantizeLinear", check=_check_block)
def dequantize_linear(node: NodeDef, x: Any, scale: Any, zero_point: Any = None) -> Any:
    import torch

    x, scale = tensor(x), tensor(scale)
    axis = node.attr("axis", 1)
    value = x.to(torch.float32)
    if zero_point is not None:
        value = value - _per_axis(tensor(zero_point), x, axis).to(torch.float32)
    return (value * _per_axis(scale, x, axis).to(torch.float32)).to(scale.dtype)


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(node: NodeDef, x: Any) -> tuple:
    import torch

    x = tensor(x).to(torch.float32)
    zero = torch.zeros((), dtype=torch.float32)
    low, high = torch.minimum(x.min(), zero), torch.maximum(x.max(), zero)
    scale = (high - low) / 255.0
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # an all-zero input
    zero_point = torch.round(0.0 - low / scale).clamp(0, 255)
    y = (torch.round(x / scale) + zero_point).clamp(0, 255)
    return y.to(torch.uint8), scale, zero_point.to(torch.uint8)


def _centered(value: Any, zero_point: Any, axis: int | None = None) -> Any:
    """``value - zero_point`` in float64; a 1-D zero point applies along ``axis``."""
    import torch

    value = tensor(value).to(torch.float64)
    if zero_point is None:
        return value
    zp = tensor(zero_point).to(torch.float64)
    if zp.ndim == 1 and zp.numel() > 1 and axis is not None:
        shape = [1] * value.ndim
        shape[axis] = -1
        zp = zp.reshape(shape)
    return value - zp


@op("MatMulInteger")
def matmul_integer(node: NodeDef, a: Any, b: Any, a_zero: Any = None, b_zero: Any = None) -> Any:
    import torch

    a_ = _centered(a, a_zero, axis=tensor(a).ndim - 2 if tensor(a).ndim > 1 else None)  # per-row
    b_ = _centered(b, b_zero, axis=tensor(b).ndim - 1)  # per-column
    return torch.round(torch.matmul(a_, b_)).to(torch.int32)


@op("ConvInteger")
def conv_integer(node: NodeDef, x: Any, w: Any, x_zero: Any = None, w_zero: Any = None) -> Any:
    import torch

    y = conv(node, _centered(x, x_zero), _centered(w, w_zero, axis=0))  # per output channel
    return torch.round(y).to(torch.int32)
