"""PyTorch -> JAX: the module run as a JAX function through torchax, its weights closed over as constants,
serialised with ``jax.export`` (StableHLO bytes plus the calling convention) into ``model.jax``.
``jax.export.deserialize(bytes).call(*inputs)`` runs it; no Python code of the model travels with it.

A ``.pt2`` program (``pt2 -> jax``: what keras-model -> onnx -> pt2 reaches, so Keras and TensorFlow models get
to JAX too) goes the same way: its module, input names and symbolic dims come from the program zoo wrote.

Dynamic axes of the source (batch, sequence) become symbolic dimensions of the export. torchax runs the module's
Python, so a model that reads ``x.shape`` into ``torch.Size`` (timm's patch embedding, transformers' mask code) cannot
be traced with a symbolic dimension; for those the module is first captured by ``torch.export`` with the same
dynamic shapes as the ONNX and ``.pt2`` exports (``torch_onnx.dynamic_shapes``), whose graph computes shapes with
``sym_size`` ops that torchax maps onto jax's symbolic dimensions. A sequence axis is bounded by the model's
longest sequence (``EdgeContext.seq_max``), declared to ``jax.export`` as a constraint so that slices of
position-sized buffers (``token_type_ids[:, :sequence]``) keep the symbolic length. When both fail, the ladder's
static-shapes rung exports the example shapes. ``io_contract`` is read back from the export itself: which axis of
which input is symbolic, under which constraints, or that the shapes are static (the pipeline then checks parity on
the input sets of that shape, re-batched). Outputs are the flattened leaves of the function's result, in the
model's output order.
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


def constraints(tm: Any, seq_max: int | None) -> tuple[str, ...]:
    """``jax.export`` constraints on the symbolic axes: a sequence axis is at most the model's longest sequence."""
    named = {dim for axes in tm.dynamic_axes.values() for dim in axes.values()}
    return (f"sequence <= {int(seq_max)}",) if seq_max and "sequence" in named else ()


# A decoder's cache lengths (tasks/text_generation.io_names) as jax dimension expressions: jax's symbols range
# over integers >= 1 and a prefill's cache is empty, so the past length is ``past_plus_one - 1``; the mask spans the
# past and the new tokens, which jax then knows (torch.export found the same relation: torch_onnx.cache_dims).
SYMBOLS = {"past_sequence": "past_plus_one - 1", "total_sequence": "past_plus_one - 1 + sequence"}


def _symbol(axis: str | None) -> str | None:
    return SYMBOLS.get(axis, axis) if axis else None


def _specs(tm: Any, example: tuple, static: bool, seq_max: int | None = None) -> list[Any]:
    """Abstract inputs: the example's shapes and dtypes, the source's dynamic axes as shared symbols."""
    import jax
    import numpy as np

    args = [np.zeros(tuple(t.shape), np.dtype(str(t.dtype).removeprefix("torch."))) for t in example]
    if static:
        return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    shapes = [", ".join(_symbol(tm.dynamic_axes.get(n, {}).get(i)) or str(int(d)) for i, d in enumerate(t.shape))
              for n, t in zip(tm.input_names, example)]
    return list(jax.export.symbolic_args_specs(args, shapes, constraints=constraints(tm, seq_max)))


def _export(module: Any, specs: list[Any]) -> Any:
    """``module`` run through torchax under ``jax.jit``, exported at ``specs``."""
    import jax
    import torch

    torchax = import_torchax()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights, fn = torchax.extract_jax(module.eval())

        def call(*args: Any) -> Any:
            out = fn(weights, args)
            return tuple(jax.tree_util.tree_leaves(out))

        return jax.export.export(jax.jit(call))(*specs)


def graph_module(program: Any) -> Any:
    """The module of a ``torch.export`` program, in core ATen (``aten.convolution`` rather than ``aten.conv2d``
    with its defaults left out, which torchax's conv2d lowering cannot take), as torchax can run it: a
    ``_to_copy`` that names the CPU device (transformers' ``mask.to(device=...)``) would make torchax hand the
    tensor back to PyTorch, which a traced value cannot be, so the device argument is dropped (torchax keeps every
    tensor on its one device anyway). Bilinear upsampling (SegFormer's and DPT's heads) is decomposed here: torchax
    would run PyTorch's Python decomposition of it, which reads ``input.shape`` into a ``torch.Size`` that a symbolic
    batch cannot be; in the graph its shapes are ``sym_size`` ops."""
    import torch

    table = torch.export.default_decompositions()
    aten = torch.ops.aten
    table.update(torch._decomp.get_decompositions([getattr(aten.upsample_bilinear2d, o) for o in ("vec", "default")]))
    gm = program.run_decompositions(table).module()
    to_copy = torch.ops.aten._to_copy.default
    aranges = (aten.arange.default, aten.arange.start, aten.arange.start_step)
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is to_copy and "device" in node.kwargs:
            node.kwargs = {k: v for k, v in node.kwargs.items() if k != "device"}
        elif node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)  # see below
        elif node.op == "call_function" and node.target in aranges and node.kwargs.get("dtype") is not None \
                and any(isinstance(a, torch.fx.Node) for a in node.args):
            _cast_after(gm, node)
    # The program's input guards (shape relations such as past + sequence <= total) are Python on the input
    # sizes, and torchax gives a symbolic size as 1 there: a guard that holds failed (``Guard failed: past_0.size()[2]
    # + input_ids.size()[1] + -1 * attention_mask.size()[1] <= 0``). jax.export checks the shapes at each call
    # against its own symbolic specs and constraints instead (``_specs``).
    if hasattr(gm, "_guards_fn"):
        del gm._guards_fn
    gm.validate_inputs = False  # the pre-hook that would otherwise check them reads torch.Size of symbolic sizes
    gm.recompile()
    return gm


def _cast_after(gm: Any, node: Any) -> None:
    """An ``arange`` of a symbolic length with a ``dtype`` (T5's and BART's positions, ``arange(query_length,
    dtype=long)``): torchax makes its bounds numpy scalars of that dtype, which a symbolic dimension cannot be
    (``Symbolic dimension 'encoder_sequence' used in a context that requires a constant``); the arange is made
    without the dtype and cast to it after, the same values."""
    import torch

    dtype = node.kwargs["dtype"]
    node.kwargs = {k: v for k, v in node.kwargs.items() if k != "dtype"}
    with gm.graph.inserting_after(node):
        cast = gm.graph.call_function(torch.ops.aten._to_copy.default, (node,), {"dtype": dtype})
    node.replace_all_uses_with(cast, delete_user_cb=lambda user: user is not cast)


def as_module(inner: Any) -> Any:
    """A ``torch.nn.Module`` around a program's module: its outputs as a tuple whatever it returns, and
    ``train()``/``eval()`` accepted (an exported program's module refuses them)."""
    import torch

    class Program(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def train(self, mode: bool = True) -> Any:
            self.training = mode
            return self

        def forward(self, *args: Any) -> tuple:
            out = self.inner(*args)
            return tuple(out) if isinstance(out, (list, tuple)) else (out,)

    return Program(inner)


def widened(tm: Any, example: tuple) -> tuple:
    """``example`` with each dynamic axis of size 1 doubled (its rows repeated): ``torch.export`` specialises a
    dimension it sees at 1 to the constant 1 and then reports the dynamic batch violated (YOLOS and DPT at the
    first input set, batch 1)."""
    import torch

    out = []
    for name, t in zip(tm.input_names, example):
        for axis in tm.dynamic_axes.get(name, {}):
            if t.shape[axis] == 1:
                t = torch.cat([t, t], dim=axis)
        out.append(t)
    return tuple(out)


def _traced_by_export(tm: Any, example: tuple, seq_max: int | None, static: bool = False) -> Any:
    """``tm``'s module captured by ``torch.export`` with the source's dynamic axes (none when ``static``: the
    example as it is), as a module torchax runs."""
    import torch

    from zoo.converters.edges.torch_onnx import dynamic_shapes

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(tm.module.eval(), tuple(example) if static else widened(tm, example),
                                      dynamic_shapes=None if static else dynamic_shapes(tm, seq_max))
    return as_module(graph_module(program))


def export_jax(tm: Any, example: tuple, static: bool, seq_max: int | None = None) -> tuple[Any, str]:
    """The ``jax.export`` of ``tm`` and how it was traced: torchax on the module, else on its ``torch.export`` graph
    (a ``torch.Size`` of a symbolic dimension; an op torchax cannot lower that the graph decomposes, such as the
    ``aten.set_`` of Wav2Vec2's weight-norm parametrisation), with the same shapes; both failures named."""
    specs = _specs(tm, example, static, seq_max)
    try:
        return _export(tm.module, specs), "torchax on the module"
    except Exception as direct:
        first = errors.first_line(direct, 200)
        try:
            module = _traced_by_export(tm, example, seq_max, static)
            return _export(module, specs), (f"torch.export ({'static' if static else 'dynamic'} shapes), then torchax "
                                            f"on its graph (torchax on the module: {type(direct).__name__}: {first})")
        except Exception as exc:
            raise RuntimeError(f"torchax on the module: {type(direct).__name__}: {first}; torchax on the torch.export "
                               f"graph: {type(exc).__name__}: {errors.first_line(exc, 200)}") from exc


def io_contract(tm: Any, example: tuple, exported: Any, limits: tuple[str, ...] = ()) -> dict[str, Any]:
    """The artifact's I/O contract, read from the export: each input's shape with its symbolic axes by name,
    ``dynamic_axes`` (input -> {axis: symbol}) exactly as the export holds them, and the symbols' constraints."""
    inputs, dynamic = [], {}
    for n, t, aval in zip(tm.input_names, example, exported.in_avals):
        shape = [d if isinstance(d, int) else str(d) for d in aval.shape]
        inputs.append({"name": n, "dtype": str(t.dtype).removeprefix("torch."), "shape": shape})
        axes = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
        if axes:
            dynamic[n] = axes
    static = not dynamic
    asked = {n: dict(a) for n, a in tm.dynamic_axes.items() if a and n in tm.input_names}
    differs = ["positional inputs in the order above; outputs a tuple in the model's output order"]
    if static and asked:
        differs.append("static shapes: the export takes exactly the shapes above (symbolic dimensions failed)")
    elif dynamic != asked:
        differs.append(f"dynamic axes {dynamic} (the source's: {asked})")
    return {"shapes": "static" if static else "dynamic", "inputs": inputs, "outputs": list(tm.output_names),
            "dynamic_axes": dynamic, "constraints": [] if static else list(limits), "differs": differs}


@edge("torch", "jax", name="torchax + jax.export", primary=PRIMARY, tools=("torchax", "jax", "jaxlib", "torch"),
      static_shapes=True, pairs=True)
def torch_to_jax(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    if getattr(tm, "seq2seq", None) is not None:  # an encoder-decoder: encoder.jax beside decoder.jax
        return _pair_to_jax(tm, out_dir, ctx)
    return _export_to(tm, ctx.example, out_dir, ctx, "torch->jax")


def _pair_to_jax(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    """An encoder-decoder (tasks/seq2seq_export.py): ``encoder.jax`` beside ``decoder.jax`` (the primary file), each
    with its I/O contract in ``ctx.info`` (symbolic batch, sequence, encoder_sequence and the past from 0)."""
    from zoo.converters.tasks import seq2seq_export
    from zoo.versions import dist_versions

    files = seq2seq_export.files_of("jax")
    info: dict[str, Any] = {"exporter": "torchax + jax.export", "serialization": "jax.export (StableHLO)",
                            "files": files, "versions": dist_versions(("torchax", "jax", "jaxlib", "torch"))}
    for part, model, example in seq2seq_export.parts(tm, ctx):
        try:
            exported, traced = export_jax(model, example, False, ctx.seq_max)
        except Exception as exc:  # noqa: BLE001
            raise errors.ConversionError(f"torchax/jax.export could not convert the {part}: "
                                         f"{errors.first_line(exc, 400, typed=True)}", edge="torch->jax",
                                         hint="pull the model as onnx or pt2") from exc
        (out_dir / files[part]).write_bytes(bytes(exported.serialize()))
        contract = io_contract(model, example, exported, constraints(model, ctx.seq_max))
        if part == "decoder":
            info.update({"traced": traced, "io_contract": contract, "shapes": contract["shapes"]})
        else:
            info["encoder"] = {"traced": traced, "io_contract": contract}
    ctx.info["torch->jax"] = info
    return out_dir / files["decoder"]


def _export_to(tm: Any, example: tuple, out_dir: Path, ctx: EdgeContext, name: str) -> Path:
    from zoo.versions import dist_versions

    out = out_dir / PRIMARY
    static = ctx.static_shapes or not any(tm.dynamic_axes.get(n) for n in tm.input_names)
    try:
        exported, traced = export_jax(tm, example, static, ctx.seq_max)
    except errors.ZooError:
        raise
    except Exception as exc:
        first = errors.first_line(exc, 400)
        raise errors.ConversionError(f"torchax/jax.export could not convert the model with {'static' if static else 'dynamic'} "
                                     f"shapes: {type(exc).__name__}: {first}", edge=name,
                                     hint="zoo tries static shapes next; convert to onnx or pt2 if that fails too") from exc
    out.write_bytes(bytes(exported.serialize()))
    contract = io_contract(tm, example, exported, constraints(tm, ctx.seq_max))
    ctx.info[name] = {"exporter": "torchax + jax.export", "serialization": "jax.export (StableHLO)", "traced": traced,
                      "versions": dist_versions(("torchax", "jax", "jaxlib", "torch")),
                      "io_contract": contract, "shapes": contract["shapes"]}
    if static and ctx.static_shapes:
        ctx.notes.append(f"the jax export takes static shapes {[list(t.shape) for t in example]} "
                         "(jax.export could not trace the dynamic axes)")
    return out


@edge("pt2", "jax", name="torchax + jax.export (ExportedProgram)", primary=PRIMARY,
      tools=("torchax", "jax", "jaxlib", "torch"), static_shapes=True)
def pt2_to_jax(src: Path, out_dir: Path, ctx: EdgeContext) -> Path:
    """A program zoo wrote (``load_program`` refuses others) run through torchax like a module."""

    from zoo.converters.edges.pt2 import program_example
    from zoo.converters.loaders.pt2_archive import load_program, program_signature
    from zoo.converters.loaders.torch_models import TorchModel

    program, signature = load_program(src)
    spec, outputs = program_signature(program, signature)
    example = program_example(program, spec)
    names = [s["name"] for s in spec]
    axes = {s["name"]: {i: d for i, d in enumerate(s["shape"]) if isinstance(d, str) and d.isidentifier()} for s in spec}

    tm = TorchModel(as_module(graph_module(program)), names, outputs or [f"output_{i}" for i in range(len(spec))], axes)
    return _export_to(tm, example, out_dir, ctx, "pt2->jax")
