"""Shape and data-movement ONNX ops: Shape, Reshape, Concat, Slice, Gather,
Expand, Pad... Shape values stay :class:`Static` wherever their inputs are, so
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains trace to symbolic
sizes, and the opset differences (attributes that became inputs) are handled
here, one place per op."""

from __future__ import annotations

from typing import Any

from zoo.converters.onnx_torch.ops.core import (
    INT64_MAX,
    NodeDef,
    Static,
    attr_in,
    dtype_of,
    ints,
    normalize_axis,
    op,
    scalar,
    tensor,
)


def _axes(node: NodeDef, axes_input: Any, since: int) -> list[int] | None:
    """Axes from the attribute (before opset ``since``) or the input (from it)."""
    if node.opset < since:
        value = node.attr("axes")
        return None if value is None else list(value)
    return None if axes_input is None else [int(a) for a in ints(axes_input)]


@op("Shape")
def shape(node: NodeDef, x: Any) -> Static:
    import torch

    dims = list(x.shape)
    start, end = node.attr("start", 0), node.attr("end", None)
    return Static(dims[start:end] if end is not None else dims[start:], torch.int64)


@op("Size")
def size(node: NodeDef, x: Any) -> Static:
    import torch

    n = 1
    for d in x.shape:
        n = n * d
    return Static([n], torch.int64, scalar=True)


@op("Reshape")
def reshape(node: NodeDef, x: Any, shape_: Any) -> Any:
    target = ints(shape_)
    dims = list(x.shape)
    if not node.attr("allowzero", 0):
        target = [dims[i] if isinstance(t, int) and t == 0 else t for i, t in enumerate(target)]
    if isinstance(x, Static):
        values = list(x.values)
        return Static(values, x.dtype, scalar=len(target) == 0)
    return x.reshape(target)


@op("Flatten")
def flatten(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    axis = normalize_axis(node.attr("axis", 1), x.ndim)
    left = 1
    for d in x.shape[:axis]:
        left = left * d
    return x.reshape(left, -1)


@op("Squeeze")
def squeeze(node: NodeDef, x: Any, axes_: Any = None) -> Any:
    axes = _axes(node, axes_, 13)
    if isinstance(x, Static):
        return Static(x.values, x.dtype, scalar=True) if len(x.values) == 1 and not x.scalar else x
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(normalize_axis(a, x.ndim) for a in axes)) if axes else x


@op("Unsqueeze")
def unsqueeze(node: NodeDef, x: Any, axes_: Any = None) -> Any:
    axes = _axes(node, axes_, 13) or []
    if isinstance(x, Static) and x.scalar and len(axes) == 1:
        return Static(x.values, x.dtype)
    x = tensor(x)
    rank = x.ndim + len(axes)
    for a in sorted(normalize_axis(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return x


@op("Transpose")
def transpose(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    perm = node.attr("perm") or list(range(x.ndim))[::-1]
    return x.permute(*perm)


@op("Concat")
def concat(node: NodeDef, *values: Any) -> Any:
    import torch

    values = tuple(v for v in values if v is not None)
    if all(isinstance(v, Static) for v in values):
        return Static([e for v in values for e in v.values], values[0].dtype)
    tensors = [tensor(v) for v in values]
    return torch.cat(tensors, dim=normalize_axis(node.attr("axis"), tensors[0].ndim))


@op("Split")
def split(node: NodeDef, x: Any, split_: Any = None) -> tuple:
    x = tensor(x)
    axis = normalize_axis(node.attr("axis", 0), x.ndim)
    sizes = node.attr("split") if node.opset < 13 else (ints(split_) if split_ is not None else None)
    if not sizes:
        n = node.attr("num_outputs") or len(node.outputs)
        total = x.shape[axis]
        chunk = -(-total // n)  # ceil: the last chunk may be smaller (opset 18)
        return tuple(x.split(chunk, dim=axis))
    return tuple(x.split(list(sizes), dim=axis))


def _slice_args(node: NodeDef, inputs: tuple, rank: int) -> list[tuple[int, Any, Any, Any]]:
    if node.opset < 10:
        starts, ends, axes, steps = node.attr("starts"), node.attr("ends"), node.attr("axes"), None
    else:
        starts, ends = ints(inputs[0]), ints(inputs[1])
        axes = ints(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
        steps = ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    return [(normalize_axis(a, rank), s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)]


def _clamp_end(end: Any) -> Any:
    return None if isinstance(end, int) and end >= INT64_MAX // 2 else end


@op("Slice")
def slice_(node: NodeDef, x: Any, *inputs: Any) -> Any:
    rank = x.ndim
    args = _slice_args(node, inputs, rank)
    if isinstance(x, Static):
        (_, start, end, step), = args
        return Static(x.values[slice(start, _clamp_end(end), step)], x.dtype)
    for axis, start, end, step in args:
        if isinstance(step, int) and step < 0:
            x = _slice_backwards(x, axis, start, end, step)
            continue
        index = [slice(None)] * axis + [slice(start, _clamp_end(end), step)]
        x = x[tuple(index)]
    return x


def _slice_backwards(x: Any, axis: int, start: int, end: int, step: int) -> Any:
    """Negative steps: torch slicing has none; index_select on the ONNX-clamped range."""
    import torch

    dim = x.shape[axis]
    start = min(max(start + dim if start < 0 else start, -1), dim - 1)
    end = min(max(end + dim if end < 0 else end, -1), dim - 1)
    return x.index_select(axis, torch.arange(start, end, step, device=x.device))


@op("Gather")
def gather(node: NodeDef, data: Any, indices: Any) -> Any:
    axis = node.attr("axis", 0)
    if isinstance(data, Static) and isinstance(indices, Static):
        n = len(data.values)
        picked = [data.values[i + n if isinstance(i, int) and i < 0 else i] for i in indices.values]
        return Static(picked, data.dtype, scalar=indices.scalar)
    data = tensor(data)
    axis = normalize_axis(axis, data.ndim)
    if isinstance(indices, Static) and indices.scalar:
        return data.select(axis, indices.values[0])
    idx = _positive(tensor(indices), data.shape[axis])
    flat = data.index_select(axis, idx.reshape(-1))
    return flat.reshape(list(data.shape[:axis]) + list(idx.shape) + list(data.shape[axis + 1:]))


def _positive(indices: Any, dim: Any) -> Any:
    """ONNX indices may count from the end; torch's index ops reject negatives."""
    import torch

    return torch.where(indices < 0, indices + dim, indices)


@op("GatherElements")
def gather_elements(node: NodeDef, data: Any, indices: Any) -> Any:
    import torch

    data = tensor(data)
    axis = normalize_axis(node.attr("axis", 0), data.ndim)
    return torch.gather(data, axis, _positive(tensor(indices), data.shape[axis]))


@op("GatherND")
def gather_nd(node: NodeDef, data: Any, indices: Any) -> Any:
    data, indices = tensor(data), tensor(indices)
    b = node.attr("batch_dims", 0)
    depth = indices.shape[-1]
    if b == 0:
        idx = tuple(_positive(indices[..., i], data.shape[i]) for i in range(depth))
        return data[idx]
    import torch

    batch_shape = list(data.shape[:b])
    flat_data = data.reshape([-1] + list(data.shape[b:]))
    flat_idx = indices.reshape([-1] + list(indices.shape[b:]))
    n = flat_data.shape[0]
    rows = torch.arange(n, device=data.device).reshape([n] + [1] * (flat_idx.ndim - 2))
    rows = rows.expand(list(flat_idx.shape[:-1]))
    idx = (rows,) + tuple(_positive(flat_idx[..., i], data.shape[b + i]) for i in range(depth))
    out = flat_data[idx]
    return out.reshape(batch_shape + list(out.shape[1:]))


_REDUCTIONS = ("none", "add", "mul", "max", "min")


@op("ScatterElements", "Scatter", check=attr_in("reduction", _REDUCTIONS, "none"))
def scatter_elements(node: NodeDef, data: Any, indices: Any, updates: Any) -> Any:
    data, updates = tensor(data), tensor(updates)
    axis = normalize_axis(node.attr("axis", 0), data.ndim)
    idx = _positive(tensor(indices), data.shape[axis])
    reduction = node.attr("reduction", "none")
    if reduction == "none":
        return data.scatter(axis, idx, updates)
    mode = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[reduction]
    return data.scatter_reduce(axis, idx, updates, reduce=mode, include_self=True)


def _check_scatter_nd(node: NodeDef) -> str | None:
    reduction = node.attr("reduction", "none")
    return None if reduction in ("none", "add") else f"reduction={reduction!r} (supported: 'none', 'add')"


@op("ScatterND", check=_check_scatter_nd)
def scatter_nd(node: NodeDef, data: Any, indices: Any, updates: Any) -> Any:
    data, indices, updates = tensor(data), tensor(indices), tensor(updates)
    depth = indices.shape[-1]
    idx = tuple(_positive(indices[..., i], data.shape[i]) for i in range(depth))
    return data.index_put(idx, updates, accumulate=node.attr("reduction", "none") == "add")


def _broadcast_shape(x_shape: list, target: list) -> list:
    """ONNX Expand: bidirectional broadcast of ``x_shape`` with ``target``."""
    rank = max(len(x_shape), len(target))
    xs = [1] * (rank - len(x_shape)) + list(x_shape)
    ts = [1] * (rank - len(target)) + list(target)
    out = []
    for a, b in zip(xs, ts):
        if isinstance(b, int) and b == 1:
            out.append(a)
        elif isinstance(a, int) and a == 1:
            out.append(b)
        else:
            out.append(b if isinstance(a, int) else a)
    return out


@op("Expand")
def expand(node: NodeDef, x: Any, shape_: Any) -> Any:
    x = tensor(x)
    out = _broadcast_shape(list(x.shape), ints(shape_))
    return x.reshape([1] * (len(out) - x.ndim) + list(x.shape)).expand(out)


@op("Tile")
def tile(node: NodeDef, x: Any, repeats: Any) -> Any:
    return tensor(x).repeat(ints(repeats))


@op("ConstantOfShape")
def constant_of_shape(node: NodeDef, shape_: Any) -> Any:
    import torch

    value = node.attr("value")
    fill, dtype = (0.0, torch.float32) if value is None else (value.reshape(-1)[0].item(), dtype_of(value))
    dims = ints(shape_)
    if len(dims) == 1 and isinstance(dims[0], int) and dims[0] <= 64 and not dtype.is_floating_point:
        return Static([fill] * dims[0], dtype)  # e.g. the ones TorchScript builds to resolve expand(-1) sizes
    return torch.full(dims, fill, dtype=dtype)


@op("Range")
def range_(node: NodeDef, start: Any, limit: Any, delta: Any) -> Any:
    import torch

    dtype = start.dtype
    return torch.arange(scalar(start), scalar(limit), scalar(delta), dtype=dtype)


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


@op("Pad", check=attr_in("mode", _PAD_MODES, "constant"))
def pad(node: NodeDef, x: Any, pads_: Any = None, value: Any = None, axes_: Any = None) -> Any:
    import torch

    x = tensor(x)
    if node.opset < 11:
        pads, fill = list(node.attr("pads")), node.attr("value", 0.0)
    else:
        pads, fill = ints(pads_), (0 if value is None else scalar(value))
    rank = x.ndim
    axes = [normalize_axis(a, rank) for a in ints(axes_)] if axes_ is not None else list(range(rank))
    begin, end = dict(zip(axes, pads[: len(axes)])), dict(zip(axes, pads[len(axes):]))
    torch_pads: list[Any] = []
    for axis in reversed(range(rank)):  # torch lists the last axis first
        torch_pads += [begin.get(axis, 0), end.get(axis, 0)]
    mode = node.attr("mode", "constant")
    if mode == "constant":
        return torch.nn.functional.pad(x, torch_pads, value=fill)
    while torch_pads[-2:] == [0, 0] and len(torch_pads) > 2:  # torch pads only trailing spatial axes
        torch_pads = torch_pads[:-2]
    mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return torch.nn.functional.pad(x, torch_pads, mode=mode)


@op("Dropout")
def dropout(node: NodeDef, x: Any, *_: Any) -> Any:
    import torch

    x = tensor(x)
    return (x, torch.ones_like(x, dtype=torch.bool)) if len(node.outputs) > 1 else x


@op("Trilu")
def trilu(node: NodeDef, x: Any, k: Any = None) -> Any:
    x = tensor(x)
    diagonal = int(scalar(k)) if k is not None else 0
    return x.triu(diagonal) if node.attr("upper", 1) else x.tril(diagonal)


@op("DepthToSpace", check=attr_in("mode", ("DCR", "CRD"), "DCR"))
def depth_to_space(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    b, c, h, w = x.shape
    s = node.attr("blocksize")
    if node.attr("mode", "DCR") == "DCR":
        y = x.reshape(b, s, s, c // (s * s), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(b, c // (s * s), s, s, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(b, c // (s * s), h * s, w * s)


@op("SpaceToDepth")
def space_to_depth(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    b, c, h, w = x.shape
    s = node.attr("blocksize")
    y = x.reshape(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * s * s, h // s, w // s)


@op("OneHot")
def one_hot(node: NodeDef, indices: Any, depth: Any, values: Any) -> Any:
    import torch

    indices, values = tensor(indices), tensor(values)
    n = int(scalar(depth))
    idx = torch.where(indices < 0, indices + n, indices).long()
    hot = torch.nn.functional.one_hot(idx, n).to(torch.bool)
    out = torch.where(hot, values[1], values[0])
    axis = normalize_axis(node.attr("axis", -1), out.ndim)
    return out.movedim(-1, axis)
