"""The op registry of zoo's ONNX -> PyTorch converter, and the values handlers see.

A handler is one small function per ONNX op, registered with ``@op("Name")``:
``fn(node, *inputs) -> value | tuple of values``, where each input is a
``torch.Tensor``, a :class:`Static` or ``None`` (an omitted optional input).
An optional ``check(node) -> reason | None`` runs before anything is built, so
unsupported attribute values are reported with unsupported ops, up front.

:class:`Static` carries the small integer vectors ONNX graphs compute shapes
with (``Shape -> Gather -> Concat -> Reshape``). Their elements are Python
ints, or ``torch.SymInt`` while ``torch.export`` traces with dynamic dims, so
shape arithmetic is recorded as symbolic and dynamic axes survive export,
instead of being frozen into constants or turned into data-dependent tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

INT64_MAX = 2**63 - 1

# ONNX TensorProto element type -> torch dtype name
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
          10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def torch_dtype(onnx_type: int) -> Any:
    import torch

    return getattr(torch, DTYPES[onnx_type])


@dataclass(frozen=True)
class NodeDef:
    """One ONNX node, attributes decoded to Python values."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    opset: int  # the model's ai.onnx opset
    consts: dict[int, Any] = field(default_factory=dict)  # input position -> numpy value, for constant inputs

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class OpSpec:
    fn: Callable[..., Any]
    check: Callable[[NodeDef], str | None] | None = None


OPS: dict[str, OpSpec] = {}


def op(*names: str, check: Callable[[NodeDef], str | None] | None = None) -> Callable:
    """Register ``fn`` as the handler of the ONNX ops ``names`` (default domain)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            OPS[name] = OpSpec(fn, check)
        return fn

    return register


def attr_in(key: str, allowed: tuple, default: Any) -> Callable[[NodeDef], str | None]:
    """A check: attribute ``key`` must take one of ``allowed``."""

    def check(node: NodeDef) -> str | None:
        value = node.attr(key, default)
        return None if value in allowed else f"{key}={value!r} (supported: {', '.join(map(repr, allowed))})"

    return check


class Static:
    """A rank-0 or rank-1 value known while tracing: ints (or SymInts), floats or bools."""

    __slots__ = ("values", "dtype", "scalar")

    def __init__(self, values: list[Any], dtype: Any, scalar: bool = False) -> None:
        self.values = list(values)
        self.dtype = dtype  # torch dtype
        self.scalar = scalar

    @property
    def shape(self) -> tuple[int, ...]:
        return () if self.scalar else (len(self.values),)

    @property
    def ndim(self) -> int:
        return 0 if self.scalar else 1

    def tensor(self) -> Any:
        import torch

        t = torch.tensor(self.values, dtype=self.dtype)
        return t.reshape(()) if self.scalar else t

    def __repr__(self) -> str:
        return f"Static({self.values}, {self.dtype}{', scalar' if self.scalar else ''})"


def tensor(value: Any) -> Any:
    """The value as a torch tensor (a Static is materialised)."""
    return value.tensor() if isinstance(value, Static) else value


def ints(value: Any) -> list[Any]:
    """The value as a list of Python ints (or SymInts): shapes, axes, pads, sizes."""
    if value is None:
        return []
    if isinstance(value, Static):
        return [v if _is_sym(v) else int(v) for v in value.values]
    return [int(v) for v in value.reshape(-1).tolist()]  # eager run, or a traced constant


def floats(node: NodeDef, index: int, value: Any) -> list[float]:
    """Float parameters given as an input (Resize scales): known constants are read
    from the graph, so no traced tensor has to be turned back into numbers."""
    if isinstance(value, Static):
        return [float(v) for v in value.values]
    if index in node.consts:
        return [float(v) for v in node.consts[index].reshape(-1)]
    return [float(v) for v in value.reshape(-1).tolist()]


def scalar(value: Any) -> Any:
    """A single number from a scalar or one-element input."""
    if isinstance(value, Static):
        return value.values[0]
    return value.reshape(-1)[0].item()


def _is_sym(v: Any) -> bool:
    return type(v).__name__ in ("SymInt", "SymFloat", "SymBool")


def static_from_array(array: Any) -> Static | None:
    """A small integer initializer or constant as a Static (None if it is not one)."""
    import numpy as np

    integral = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    numeric = integral or np.issubdtype(array.dtype, np.floating)
    # small integer vectors (shapes, axes) and scalars of any number type; float vectors are weights
    if not numeric or array.ndim > 1 or array.size > 64 or (not integral and array.ndim != 0):
        return None
    return Static([v.item() for v in array.reshape(-1)], dtype_of(array), scalar=array.ndim == 0)


def dtype_of(array: Any) -> Any:
    """The torch dtype of a numpy array."""
    import numpy as np
    import torch

    return torch.from_numpy(np.empty(0, array.dtype)).dtype


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
