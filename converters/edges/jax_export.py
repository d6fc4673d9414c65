"""PyTorch -> JAX: the module run as a JAX function through torchax, its weights closed over as constants,
serialised with ``jax.export`` (StableHLO bytes plus the calling convention) into ``model.jax``.
``jax.export.deserialize(bytes).call(*inputs)`` runs it; no Python code of the model travels with it.

A ``.pt2`` program (``pt2 -> jax``: what keras-model -> onnx -> pt2 reaches, so Keras and TensorFlow models get
to JAX too) goes the same way: its module, input names and symbolic dims come from the program zoo wrote.

Dynamic axes of the source (batch, sequence) become symbolic dimensions of the export; when torchax cannot
trace them symbolically, the ladder's static-shapes rung exports the example shapes, and ``io_contract`` says so (the
pipeline then checks parity on the input sets of that shape only). Outputs are the flattened leaves of the
function's result, in the model's output order.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge

PRIMARY = "model.jax"


class _AbsentOp:
    """Stands for an ATen op (or overload) this torch no longer has, which torchax's tables still name:
    torchax 0.0.13 indexes ``aten.prod.dim_Dimname``, ``aten.cholesky`` and others that torch 2.14 removed,
    at import. Nothing calls it: a graph exported by this torch cannot contain an op it lacks."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        return _AbsentOp(f"{self.name}.{item}")

    def __repr__(self) -> str:
        return f"<aten op absent from this torch: {self.name}>"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _AbsentOp) and other.name == self.name


def _absent_ops(torch: Any, root: Path) -> list[tuple[str, str | None]]:
    """The ``torch.ops.aten.OP[.OVERLOAD]`` names torchax's source uses that this torch lacks."""
    missing = set()
    for file in root.rglob("*.py"):
        for m in re.finditer(r"torch\.ops\.aten\.(\w+)(?:\.(\w+))?", file.read_text(errors="replace")):
            try:
                packet = getattr(torch.ops.aten, m[1])
            except AttributeError:
                missing.add((m[1], None))
                continue
            if m[2]:
                try:
                    getattr(packet, m[2])
                except AttributeError:
                    missing.add((m[1], m[2]))
    return sorted(missing, key=str)


def import_torchax() -> Any:
    """torchax, importable under this torch (see ``_AbsentOp``)."""
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchax")
    if spec is None or spec.origin is None:
        raise errors.MissingDependencyError("torchax and jax are needed to convert to jax but are not installed",
                                            hint="pip install 'zoo-hub[jax]'")
    for op, overload in _absent_ops(torch, Path(spec.origin).parent):
        if overload is None:
            setattr(torch.ops.aten, op, _AbsentOp(op))
        else:
            setattr(getattr(torch.ops.aten, op), overload, _AbsentOp(f"{op}.{overload}"))
    import torchax

    return torchax


def _specs(tm: Any, example: tuple, static: bool) -> list[Any]:
    """Abstract inputs: the example's shapes and dtypes, the source's dynamic axes as shared symbols."""
    import jax
    import numpy as np

    args = [np.zeros(tuple(t.shape), np.dtype(str(t.dtype).removeprefix("torch."))) for t in example]
    if static:
        return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    shapes = [", ".join(tm.dynamic_axes.get(n, {}).get(i) or str(int(d)) for i, d in enumerate(t.shape))
              for n, t in zip(tm.input_names, example)]
    return list(jax.export.symbolic_args_specs(args, shapes))


def export_jax(tm: Any, example: tuple, static: bool) -> bytes:
    import jax
    import torch

    torchax = import_torchax()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights, fn = torchax.extract_jax(tm.module.eval())

        def call(*args: Any) -> Any:
            out = fn(weights, args)
            return tuple(jax.tree_util.tree_leaves(out))

        exported = jax.export.export(jax.jit(call))(*_specs(tm, example, static))
    return bytes(exported.serialize())


def io_contract(tm: Any, example: tuple, static: bool) -> dict[str, Any]:
    inputs = [{"name": n, "dtype": str(t.dtype).removeprefix("torch."),
               "shape": list(t.shape) if static else [tm.dynamic_axes.get(n, {}).get(i, d) for i, d in enumerate(t.shape)]}
              for n, t in zip(tm.input_names, example)]
    differs = ["positional inputs in the order above; outputs a tuple in the model's output order"]
    if static:
        differs.append("static shapes: the export takes exactly the shapes above (symbolic dimensions failed)")
    return {"shapes": "static" if static else "dynamic", "inputs": inputs, "outputs": list(tm.output_names),
            "differs": differs}


@edge("torch", "jax", name="torchax + jax.export", primary=PRIMARY, tools=("torchax", "jax", "jaxlib", "torch"),
      static_shapes=True)
def torch_to_jax(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    return _export_to(tm, ctx.example, out_dir, ctx, "torch->jax")


def _export_to(tm: Any, example: tuple, out_dir: Path, ctx: EdgeContext, name: str) -> Path:
    from zoo.versions import dist_versions

    out = out_dir / PRIMARY
    static = ctx.static_shapes or not any(tm.dynamic_axes.get(n) for n in tm.input_names)
    try:
        blob = export_jax(tm, example, static)
    except errors.ZooError:
        raise
    except Exception as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")[:300]
        raise errors.ConversionError(f"torchax/jax.export could not convert the model with {'static' if static else 'dynamic'} "
                                     f"shapes: {type(exc).__name__}: {first}", edge=name,
                                     hint="zoo tries static shapes next; convert to onnx or pt2 if that fails too") from exc
    out.write_bytes(blob)
    ctx.info[name] = {"exporter": "torchax + jax.export", "serialization": "jax.export (StableHLO)",
                      "versions": dist_versions(("torchax", "jax", "jaxlib", "torch")),
                      "io_contract": io_contract(tm, example, static), "shapes": "static" if static else "dynamic"}
    if static and ctx.static_shapes:
        ctx.notes.append(f"the jax export takes static shapes {[list(t.shape) for t in example]} "
                         "(jax.export could not trace the dynamic axes)")
    return out

@edge("pt2", "jax", name="torchax + jax.export (ExportedProgram)", primary=PRIMARY,
      tools=("torchax", "jax", "jaxlib", "torch"), static_shapes=True)
def pt2_to_jax(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    """A program zoo wrote (``load_program`` refuses others) run through torchax like a module."""
    import torch

    from zoo.converters.edges.pt2 import program_example
    from zoo.converters.loaders.pt2_archive import load_program, program_signature
    from zoo.converters.loaders.torch_models import TorchModel

    program, signature = load_program(src)
    spec, outputs = program_signature(program, signature)
    example = program_example(program, spec)
    names = [s["name"] for s in spec]
    axes = {s["name"]: {i: d for i, d in enumerate(s["shape"]) if isinstance(d, str) and d.isidentifier()} for s in spec}

    class Program(torch.nn.Module):  # the program's module, its outputs as a tuple whatever it returns
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def train(self, mode: bool = True) -> Any:  # an exported program's module refuses train()/eval()
            self.training = mode
            return self

        def forward(self, *args: Any) -> tuple:
            out = self.inner(*args)
            return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    # core ATen (aten.convolution rather than aten.conv2d with its defaults left out, which torchax's conv2d
    # lowering cannot take)
    program = program.run_decompositions()
    tm = TorchModel(Program(program.module()), names, outputs or [f"output_{i}" for i in range(len(spec))], axes)
    return _export_to(tm, example, out_dir, ctx, "pt2->jax")
