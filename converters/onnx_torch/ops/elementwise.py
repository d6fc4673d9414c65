"""Element-wise ONNX ops: arithmetic, comparisons, logic, math functions,
activations and casts. Arithmetic on :class:`Static` shape values stays static
(symbolic while tracing); anything touching a tensor becomes a tensor op."""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

from zoo.converters.onnx_torch.ops.core import (
    DTYPES,
    NodeDef,
    Static,
    op,
    tensor,
    torch_dtype,
)


# --- Static arithmetic ----------------------------------------------------------------------
def _sym(name: str) -> Callable:
    import torch

    return getattr(torch, name)


def _trunc_div(x: Any, y: Any) -> Any:
    if isinstance(x, float) or isinstance(y, float) or type(x).__name__ == "SymFloat":
        return x / y
    return x // y if (x >= 0) == (y > 0) else -(-x // y)


def _static_binary(fn: Callable, a: Static, b: Static, dtype: Any) -> Static:
    av, bv = a.values, b.values
    n = max(len(av), len(bv))
    if len(av) not in (1, n) or len(bv) not in (1, n):
        raise ValueError(f"cannot broadcast shapes {a.shape} and {b.shape}")
    values = [fn(av[i if len(av) > 1 else 0], bv[i if len(bv) > 1 else 0]) for i in range(n)]
    return Static(values, dtype, scalar=a.scalar and b.scalar)


def _both_static(a: Any, b: Any) -> bool:
    return isinstance(a, Static) and isinstance(b, Static)


def _int_tensor_div(a: Any, b: Any) -> Any:
    import torch

    return torch.div(a, b, rounding_mode="trunc") if not a.dtype.is_floating_point else a / b


def _static_max(x: Any, y: Any) -> Any:
    return _sym("sym_max")(x, y) if _symbolic(x, y) else max(x, y)


def _static_min(x: Any, y: Any) -> Any:
    return _sym("sym_min")(x, y) if _symbolic(x, y) else min(x, y)


def _symbolic(*values: Any) -> bool:
    return any(type(v).__name__.startswith("Sym") for v in values)


# name -> (static function or None, tensor function, result is bool)
_BINARY: dict[str, tuple[Callable | None, Callable, bool]] = {
    "Add": (operator.add, operator.add, False),
    "Sub": (operator.sub, operator.sub, False),
    "Mul": (operator.mul, operator.mul, False),
    "Div": (_trunc_div, _int_tensor_div, False),
    "Equal": (operator.eq, lambda a, b: a == b, True),
    "Less": (operator.lt, lambda a, b: a < b, True),
    "LessOrEqual": (operator.le, lambda a, b: a <= b, True),
    "Greater": (operator.gt, lambda a, b: a > b, True),
    "GreaterOrEqual": (operator.ge, lambda a, b: a >= b, True),
    "And": (lambda x, y: x and y, lambda a, b: a.logical_and(b), True),
    "Or": (lambda x, y: x or y, lambda a, b: a.logical_or(b), True),
    "Xor": (operator.xor, lambda a, b: a.logical_xor(b), True),
}


@op(*_BINARY)
def binary(node: NodeDef, a: Any, b: Any) -> Any:
    import torch

    static_fn, tensor_fn, is_bool = _BINARY[node.op_type]
    if _both_static(a, b) and static_fn is not None:
        return _static_binary(static_fn, a, b, torch.bool if is_bool else a.dtype)
    return tensor_fn(tensor(a), tensor(b))


@op("Pow")
def pow_(node: NodeDef, a: Any, b: Any) -> Any:
    import torch

    a, b = tensor(a), tensor(b)
    out = torch.pow(a, b)
    return out if out.dtype == a.dtype else out.to(a.dtype)


@op("Mod", check=lambda n: None if n.attr("fmod", 0) in (0, 1) else f"fmod={n.attr('fmod')!r}")
def mod(node: NodeDef, a: Any, b: Any) -> Any:
    import torch

    if _both_static(a, b) and not node.attr("fmod", 0):
        return _static_binary(operator.mod, a, b, a.dtype)
    a, b = tensor(a), tensor(b)
    return torch.fmod(a, b) if node.attr("fmod", 0) else torch.remainder(a, b)


@op("BitShift", check=lambda n: None if n.attr("direction") in ("LEFT", "RIGHT") else "direction must be LEFT or RIGHT")
def bit_shift(node: NodeDef, a: Any, b: Any) -> Any:
    a, b = tensor(a), tensor(b)
    return a << b if node.attr("direction") == "LEFT" else a >> b


def _variadic(static_fn: Callable, tensor_fn: Callable, values: tuple) -> Any:
    if all(isinstance(v, Static) for v in values):
        out = values[0]
        for v in values[1:]:
            out = _static_binary(static_fn, out, v, out.dtype)
        return out
    out = tensor(values[0])
    for v in values[1:]:
        out = tensor_fn(out, tensor(v))
    return out


@op("Max")
def max_(node: NodeDef, *values: Any) -> Any:
    import torch

    return _variadic(_static_max, torch.maximum, values)


@op("Min")
def min_(node: NodeDef, *values: Any) -> Any:
    import torch

    return _variadic(_static_min, torch.minimum, values)


@op("Sum")
def sum_(node: NodeDef, *values: Any) -> Any:
    return _variadic(operator.add, operator.add, values)


@op("Mean")
def mean(node: NodeDef, *values: Any) -> Any:
    return _variadic(operator.add, operator.add, tuple(tensor(v) for v in values)) / len(values)


@op("Where")
def where(node: NodeDef, cond: Any, x: Any, y: Any) -> Any:
    import torch

    if isinstance(cond, Static) and _both_static(x, y):
        pick = _pick
        n = max(len(cond.values), len(x.values), len(y.values))
        at = lambda v, i: v.values[i if len(v.values) > 1 else 0]  # noqa: E731
        return Static([pick(at(cond, i), at(x, i), at(y, i)) for i in range(n)], x.dtype,
                      scalar=cond.scalar and x.scalar and y.scalar)
    return torch.where(tensor(cond), tensor(x), tensor(y))


def _pick(c: Any, a: Any, b: Any) -> Any:
    """``a if c else b`` without a guard when ``c`` is symbolic but decided by the value ranges
    (``batch == -1`` is always false), else kept symbolic with ``torch.sym_ite``."""
    if not _symbolic(c):
        return a if c else b
    import torch
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    if statically_known_true(c):
        return a
    if statically_known_true(torch.sym_not(c)):
        return b
    if type(a) is type(b):
        return torch.sym_ite(c, a, b)
    return a if c else b  # guards on c: the traced program keeps that branch


# --- unary math and activations -------------------------------------------------------------
_UNARY = {
    "Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "reciprocal",
    "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign", "Sin": "sin", "Cos": "cos", "Tan": "tan",
    "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh",
    "Acosh": "acosh", "Atanh": "atanh", "Erf": "erf", "Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu",
    "Not": "logical_not", "IsNaN": "isnan", "Softsign": "nn.functional.softsign", "HardSwish": "nn.functional.hardswish",
    "Mish": "nn.functional.mish",
}
_STATIC_UNARY = {"Abs": abs, "Neg": operator.neg, "Floor": math.floor, "Ceil": math.ceil, "Not": operator.not_}


@op(*_UNARY)
def unary(node: NodeDef, x: Any) -> Any:
    import torch

    if isinstance(x, Static) and node.op_type in _STATIC_UNARY:
        fn = _STATIC_UNARY[node.op_type]
        dtype = x.dtype
        return Static([fn(v) for v in x.values], dtype, x.scalar)
    target: Any = torch
    for part in _UNARY[node.op_type].split("."):
        target = getattr(target, part)
    return target(tensor(x))


@op("Identity")
def identity(node: NodeDef, x: Any) -> Any:
    return x


@op("IsInf")
def is_inf(node: NodeDef, x: Any) -> Any:
    import torch

    x = tensor(x)
    pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
    return (torch.isposinf(x) if pos else torch.zeros_like(x, dtype=torch.bool)) | (torch.isneginf(x) if neg else False)


@op("Softplus")
def softplus(node: NodeDef, x: Any) -> Any:
    import torch

    x = tensor(x)
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))  # ONNX: log(exp(x) + 1), no beta


@op("LeakyRelu")
def leaky_relu(node: NodeDef, x: Any) -> Any:
    import torch

    return torch.nn.functional.leaky_relu(tensor(x), node.attr("alpha", 0.01))


@op("Elu")
def elu(node: NodeDef, x: Any) -> Any:
    import torch

    return torch.nn.functional.elu(tensor(x), node.attr("alpha", 1.0))


@op("Celu")
def celu(node: NodeDef, x: Any) -> Any:
    import torch

    return torch.nn.functional.celu(tensor(x), node.attr("alpha", 1.0))


@op("Selu")
def selu(node: NodeDef, x: Any) -> Any:
    import torch

    x = tensor(x)
    alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@op("ThresholdedRelu")
def thresholded_relu(node: NodeDef, x: Any) -> Any:
    import torch

    x = tensor(x)
    return torch.where(x > node.attr("alpha", 1.0), x, torch.zeros_like(x))


@op("HardSigmoid")
def hard_sigmoid(node: NodeDef, x: Any) -> Any:
    x = tensor(x)
    return (x * node.attr("alpha", 0.2) + node.attr("beta", 0.5)).clamp(0.0, 1.0)


@op("PRelu")
def prelu(node: NodeDef, x: Any, slope: Any) -> Any:
    import torch

    x, slope = tensor(x), tensor(slope)
    return torch.where(x < 0, x * slope, x)


@op("Gelu", check=lambda n: None if n.attr("approximate", "none") in ("none", "tanh") else f"approximate={n.attr('approximate')!r}")
def gelu(node: NodeDef, x: Any) -> Any:
    import torch

    return torch.nn.functional.gelu(tensor(x), approximate=node.attr("approximate", "none"))


@op("Clip")
def clip(node: NodeDef, x: Any, low: Any = None, high: Any = None) -> Any:
    x = tensor(x)
    if node.opset < 11:
        low, high = node.attr("min"), node.attr("max")
    low = tensor(low) if low is not None else None
    high = tensor(high) if high is not None else None
    if low is None and high is None:
        return x
    return x.clamp(min=low, max=high)


# --- casts ----------------------------------------------------------------------------------
def _cast_static(x: Static, dtype: Any) -> Static:
    import torch

    if dtype == torch.bool:
        fn: Callable = lambda v: v != 0  # noqa: E731
    elif dtype.is_floating_point:
        fn = lambda v: torch.sym_float(v) if _symbolic(v) else float(v)  # noqa: E731
    else:
        fn = lambda v: torch.sym_int(v) if _symbolic(v) else int(v)  # noqa: E731
    return Static([fn(v) for v in x.values], dtype, x.scalar)


def _check_cast(node: NodeDef) -> str | None:
    return None if node.attr("to") in DTYPES else f"to={node.attr('to')} (element type not supported)"


@op("Cast", check=_check_cast)
def cast(node: NodeDef, x: Any) -> Any:
    dtype = torch_dtype(node.attr("to"))
    if isinstance(x, Static):
        return _cast_static(x, dtype)
    return x.to(dtype)


@op("CastLike")
def cast_like(node: NodeDef, x: Any, like: Any) -> Any:
    dtype = like.dtype
    if isinstance(x, Static):
        return _cast_static(x, dtype)
    return x.to(dtype)
