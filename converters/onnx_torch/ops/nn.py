"""Convolutions, pooling, normalisation and resizing. ONNX pads may be
asymmetric and ``auto_pad`` may ask for SAME padding, which torch's layers
cannot express: those inputs are padded explicitly, then convolved or pooled
with no padding."""

from __future__ import annotations

from typing import Any

from zoo.converters.onnx_torch.ops.core import (
    NodeDef,
    attr_in,
    floats,
    ints,
    normalize_axis,
    op,
    tensor,
)

_AUTO_PAD = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _spatial_pads(node: NodeDef, in_sizes: list, kernel: list, strides: list, dilations: list) -> list[tuple]:
    """(begin, end) padding per spatial axis, resolving ``auto_pad``."""
    auto = node.attr("auto_pad", "NOTSET")
    n = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto == "SAME_UPPER" else (large, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * n
    flat = list(node.attr("pads") or [0] * (2 * n))
    return list(zip(flat[:n], flat[n:]))


def _torch_pad(pads: list[tuple]) -> list:
    out: list = []
    for begin, end in reversed(pads):
        out += [begin, end]
    return out


def _geometry(node: NodeDef, x: Any, kernel: list) -> tuple[list, list, list[tuple]]:
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    pads = _spatial_pads(node, list(x.shape[2:]), kernel, strides, dilations)
    return strides, dilations, pads


def _symmetric(pads: list[tuple]) -> bool:
    return all(b == e for b, e in pads)


@op("Conv", check=attr_in("auto_pad", _AUTO_PAD, "NOTSET"))
def conv(node: NodeDef, x: Any, w: Any, b: Any = None) -> Any:
    import torch.nn.functional as F

    x, w = tensor(x), tensor(w)
    kernel = list(node.attr("kernel_shape") or w.shape[2:])
    strides, dilations, pads = _geometry(node, x, kernel)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(kernel)]
    if _symmetric(pads):
        padding = [p for p, _ in pads]
    else:
        x, padding = F.pad(x, _torch_pad(pads)), [0] * len(kernel)
    return fn(x, w, tensor(b) if b is not None else None, strides, padding, dilations, node.attr("group", 1))


def _check_conv_transpose(node: NodeDef) -> str | None:
    return attr_in("auto_pad", _AUTO_PAD, "NOTSET")(node)


@op("ConvTranspose", check=_check_conv_transpose)
def conv_transpose(node: NodeDef, x: Any, w: Any, b: Any = None) -> Any:
    import torch.nn.functional as F

    x, w = tensor(x), tensor(w)
    kernel = list(node.attr("kernel_shape") or w.shape[2:])
    n = len(kernel)
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    out_pad = list(node.attr("output_padding") or [0] * n)
    in_sizes = list(x.shape[2:])
    full = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(in_sizes, strides, kernel, dilations)]
    auto = node.attr("auto_pad", "NOTSET")
    target = node.attr("output_shape")
    if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_sizes, strides)]
    if target is not None:  # onnxruntime's rule: SAME_UPPER crops more at the end, otherwise at the start
        pads = []
        for f, extra, t in zip(full, out_pad, list(target)[-n:]):
            total = max(f + extra - t, 0)
            head = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads.append((head, f + extra - t - head))  # a negative tail grows the output with zeros
    else:
        flat = list(node.attr("pads") or [0] * (2 * n))
        pads = list(zip(flat[:n], flat[n:]))
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    y = fn(x, w, None, strides, 0, 0, node.attr("group", 1), dilations)
    # crop the pads, add output_padding (zeros, then bias) at the end: F.pad crops with negative amounts
    y = F.pad(y, _torch_pad([(-head, extra - tail) for (head, tail), extra in zip(pads, out_pad)]))
    if b is not None:
        y = y + tensor(b).reshape([1, -1] + [1] * n)
    return y


def _check_pool(node: NodeDef) -> str | None:
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        return "the Indices output"
    return attr_in("auto_pad", _AUTO_PAD, "NOTSET")(node)


def _pool_args(node: NodeDef, x: Any, kind: str) -> tuple:
    """(x, kernel, strides, dilations, pads, torch pooling function, ceil_mode) of a pooling node."""
    import torch.nn.functional as F

    x = tensor(x)
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, pads = _geometry(node, x, kernel)
    return x, kernel, strides, dilations, pads, getattr(F, f"{kind}{len(kernel)}d"), bool(node.attr("ceil_mode", 0))


@op("MaxPool", check=_check_pool)
def max_pool(node: NodeDef, x: Any) -> Any:
    import torch.nn.functional as F

    x, kernel, strides, dilations, pads, fn, ceil = _pool_args(node, x, "max_pool")
    if _symmetric(pads) and all(p <= k // 2 for (p, _), k in zip(pads, kernel)):
        return fn(x, kernel, strides, [p for p, _ in pads], dilations, ceil_mode=ceil)
    x = F.pad(x, _torch_pad(pads), value=float("-inf"))
    return fn(x, kernel, strides, 0, dilations, ceil_mode=ceil)


def _check_avg_pool(node: NodeDef) -> str | None:
    if any(d != 1 for d in node.attr("dilations") or []):
        return f"dilations={node.attr('dilations')}"
    return _check_pool(node)


@op("AveragePool", check=_check_avg_pool)
def average_pool(node: NodeDef, x: Any) -> Any:
    import torch
    import torch.nn.functional as F

    x, kernel, strides, _, pads, fn, ceil = _pool_args(node, x, "avg_pool")
    padded = F.pad(x, _torch_pad(pads))
    out = fn(padded, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    if node.attr("count_include_pad", 0) or all(p == (0, 0) for p in pads):
        return out
    mask = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads))
    return out / fn(mask, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)


@op("GlobalAveragePool")
def global_average_pool(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(node: NodeDef, x: Any) -> Any:
    import torch

    x = tensor(x)
    return torch.amax(x, dim=tuple(range(2, x.ndim)), keepdim=True)


def _check_batch_norm(node: NodeDef) -> str | None:
    if node.attr("training_mode", 0):
        return "training_mode=1"
    if any(node.outputs[1:]):
        return "running mean/var outputs (training)"
    if node.opset < 9 and node.attr("spatial", 1) != 1:
        return "spatial=0"
    return None


@op("BatchNormalization", check=_check_batch_norm)
def batch_norm(node: NodeDef, x: Any, scale: Any, bias: Any, mean: Any, var: Any) -> Any:
    import torch.nn.functional as F

    return F.batch_norm(tensor(x), tensor(mean), tensor(var), tensor(scale), tensor(bias), False, 0.0,
                        node.attr("epsilon", 1e-5))


@op("InstanceNormalization")
def instance_norm(node: NodeDef, x: Any, scale: Any, bias: Any) -> Any:
    import torch.nn.functional as F

    return F.instance_norm(tensor(x), weight=tensor(scale), bias=tensor(bias), eps=node.attr("epsilon", 1e-5))


@op("LayerNormalization")
def layer_norm(node: NodeDef, x: Any, scale: Any, bias: Any = None) -> Any:
    import torch

    x, scale = tensor(x), tensor(scale)
    axis = normalize_axis(node.attr("axis", -1), x.ndim)
    eps = node.attr("epsilon", 1e-5)
    normalized = list(x.shape[axis:])
    bias = tensor(bias) if bias is not None else None
    if len(node.outputs) == 1 or not any(node.outputs[1:]):
        if list(scale.shape) == normalized and (bias is None or list(bias.shape) == normalized):
            return torch.nn.functional.layer_norm(x, normalized, scale, bias, eps)
    dims = tuple(range(axis, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt(((x - mean) ** 2).mean(dim=dims, keepdim=True) + eps)
    y = (x - mean) * inv_std * scale
    y = y + bias if bias is not None else y
    return (y, mean, inv_std)[: len(node.outputs)] if len(node.outputs) > 1 else y


@op("GroupNormalization")
def group_norm(node: NodeDef, x: Any, scale: Any, bias: Any) -> Any:
    import torch.nn.functional as F

    x, scale, bias = tensor(x), tensor(scale), tensor(bias)
    groups = node.attr("num_groups")
    channels = x.shape[1]
    if node.opset < 21 and scale.shape[0] == groups and groups != channels:  # opset 18: one scale per group
        scale = scale.repeat_interleave(channels // groups)
        bias = bias.repeat_interleave(channels // groups)
    return F.group_norm(x, groups, scale, bias, node.attr("epsilon", 1e-5))


@op("LRN")
def lrn(node: NodeDef, x: Any) -> Any:
    import torch.nn.functional as F

    return F.local_response_norm(tensor(x), node.attr("size"), node.attr("alpha", 1e-4), node.attr("beta", 0.75),
                                 node.attr("bias", 1.0))


@op("LpNormalization", check=lambda n: None if n.attr("p", 2) in (1, 2) else f"p={n.attr('p')}")
def lp_normalization(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    axis = normalize_axis(node.attr("axis", -1), x.ndim)
    return x / x.norm(p=node.attr("p", 2), dim=axis, keepdim=True)


# --- Resize ---------------------------------------------------------------------------------
# (mode, coordinate_transformation_mode, nearest_mode) -> (torch mode, align_corners)
_RESIZE = {
    ("nearest", "asymmetric", "floor"): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("linear", "half_pixel", None): ("linear", False),
    ("linear", "pytorch_half_pixel", None): ("linear", False),
    ("linear", "align_corners", None): ("linear", True),
    ("cubic", "half_pixel", None): ("cubic", False),
    ("cubic", "align_corners", None): ("cubic", True),
}


def _resize_key(node: NodeDef) -> tuple:
    mode = node.attr("mode", "nearest")
    default_ct = "half_pixel" if node.opset >= 11 else "asymmetric"
    ct = node.attr("coordinate_transformation_mode", default_ct)
    nearest = node.attr("nearest_mode", "round_prefer_floor" if node.opset >= 11 else "floor") if mode == "nearest" else None
    return mode, ct, nearest


# nearest modes torch has no interpolate mode for are computed as index gathers, as the ONNX spec defines them
_NEAREST_CT = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn")
_NEAREST_ROUND = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _check_resize(node: NodeDef) -> str | None:
    mode, ct, nearest = _resize_key(node)
    gathered = mode == "nearest" and ct in _NEAREST_CT and nearest in _NEAREST_ROUND
    if (mode, ct, nearest) not in _RESIZE and not gathered:
        what = f"mode={mode!r}, coordinate_transformation_mode={ct!r}" + (f", nearest_mode={nearest!r}" if nearest else "")
        return what + " (torch.nn.functional.interpolate has no equivalent)"
    if mode == "cubic" and (node.attr("cubic_coeff_a", -0.75) != -0.75 or node.attr("exclude_outside", 0)):
        return "cubic_coeff_a other than -0.75 or exclude_outside=1"
    if node.attr("antialias", 0):
        return "antialias=1"
    if node.attr("axes") is not None or node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        return "axes or keep_aspect_ratio_policy"
    return None


@op("Resize", check=_check_resize)
def resize(node: NodeDef, x: Any, roi: Any = None, scales: Any = None, sizes: Any = None) -> Any:
    import torch.nn.functional as F

    x = tensor(x)
    if node.opset < 11:
        scales, roi = roi, None  # Resize-10: (X, scales)
    spatial = x.ndim - 2
    key = _resize_key(node)
    if key not in _RESIZE:  # a nearest mode interpolate lacks (_check_resize let only those through)
        out = ints(sizes)[2:] if sizes is not None else None
        factors = None if out is not None else floats(node, 2 if node.opset >= 11 else 1, scales)[2:]
        for axis in range(spatial):
            dim = 2 + axis
            length = x.shape[dim]
            size = out[axis] if out is not None else int(length * factors[axis])
            scale = size / length if out is not None else factors[axis]
            x = x.index_select(dim, _nearest_index(length, size, scale, key[1], key[2], x.device))
        return x
    mode, align = _RESIZE[key]
    if mode in ("linear", "cubic"):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial] if mode == "linear" else "bicubic"
    kwargs: dict[str, Any] = {"mode": mode}
    if align is not None:
        kwargs["align_corners"] = align
    if sizes is not None:
        return F.interpolate(x, size=ints(sizes)[2:], **kwargs)
    factors = floats(node, 2 if node.opset >= 11 else 1, scales)
    return F.interpolate(x, scale_factor=factors[2:], recompute_scale_factor=False, **kwargs)


def _nearest_index(length: Any, size: Any, scale: float, ct: str, rounding: str, device: Any) -> Any:
    """Input index per output index along one axis: the ONNX Resize coordinate transform, then its rounding."""
    import torch

    o = torch.arange(size, dtype=torch.float32, device=device)
    if ct == "asymmetric":
        coord = o / scale
    elif ct == "tf_half_pixel_for_nn":
        coord = (o + 0.5) / scale
    elif ct == "align_corners":
        coord = o * ((length - 1) / (size - 1)) if size > 1 else o * 0
    else:  # half_pixel; pytorch_half_pixel differs only for an output of length 1
        coord = (o + 0.5) / scale - 0.5
        if ct == "pytorch_half_pixel" and size == 1:
            coord = o * 0
    if rounding == "round_prefer_floor":
        index = torch.ceil(coord - 0.5)
    elif rounding == "round_prefer_ceil":
        index = torch.floor(coord + 0.5)
    else:
        index = torch.floor(coord) if rounding == "floor" else torch.ceil(coord)
    return index.clamp(0, length - 1).to(torch.int64)


def _check_upsample(node: NodeDef) -> str | None:
    return None if node.attr("mode", "nearest") == "nearest" else f"mode={node.attr('mode')!r} (asymmetric linear)"


@op("Upsample", check=_check_upsample)
def upsample(node: NodeDef, x: Any, scales: Any = None) -> Any:
    import torch.nn.functional as F

    x = tensor(x)
    factors = node.attr("scales") if node.opset < 9 else floats(node, 1, scales)
    return F.interpolate(x, scale_factor=[float(f) for f in factors[2:]], mode="nearest", recompute_scale_factor=False)
