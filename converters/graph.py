"""The conversion graph: formats are nodes, converters are edges, and a
request is planned as the shortest path from the source format.

An edge is a function ``run(src, out_dir, ctx) -> primary file`` that writes
only under ``out_dir``. ``src`` is the in-memory model for the ``torch`` node
and the previous hop's primary file otherwise. Each edge names the dtype whose
tolerance its output is checked at; a chain is checked end to end against the
source model at the loosest tolerance along it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zoo import errors

DTYPE_ORDER = ("float32", "float16", "bfloat16", "int8", "int4")  # loosest last
DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 9, 23  # the ONNX opsets torch.onnx and zoo's own converters are used and tested with


@dataclass
class EdgeContext:
    opset: int
    exporter: str = "auto"
    example: tuple = ()  # torch tensors at the export shape
    static_shapes: bool = False  # the ladder's static-shapes rung: export exactly the example's shapes
    seq_max: int | None = None
    task: str | None = None  # the source's task (text-generation, ...): edges that serve only some tasks read it
    # write ONNX weights as external data (model.onnx + model.onnx.data) above this many bytes (edges/onnx_external)
    external_data_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # what each edge reports (exporter used, versions...)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    name: str  # the tool it wraps, e.g. "torch.onnx", "onnxruntime.quantization"
    dtype: str
    primary: str  # file name the edge writes in its output directory
    run: Callable[[Any, Path, EdgeContext], Path]
    tools: tuple[str, ...] = ()  # the packages whose versions decide its output (part of the cache key)
    tasks: tuple[str, ...] = ()  # the only tasks it converts (empty: any); checked before a chain runs
    pairs: bool = False  # it converts an encoder-decoder's two files together (tasks/seq2seq.py)


EDGES: dict[tuple[str, str], Edge] = {}
# More converters for a pair EDGES already holds (another route to the same format), in the order they are
# tried before the planned chain: see ``routes``.
ALTERNATIVES: dict[tuple[str, str], list[Edge]] = {}
# Longer chains through an alternative edge that are still routes, tried after every route no longer than the plan:
# (source, a node the chain passes through, the alternative edge's name). TFLite from a PyTorch model through
# jax2tf's SavedModel (torch -> jax -> tf -> tflite): TF 2.19's converter lowers the StableHLO of its one
# XlaCallModule for timm ConvNeXt and the transformers ViT with a dynamic batch (which litert-torch never exports),
# timm's ViT with static shapes only (the one tflite route it has), never BERT's (vhlo.reduce_v1, or a gather of
# dynamic shape): the last route, each rung parity-checked (docs/parity-matrix.md).
DETOURS: set[tuple[str, str, str]] = {("torch", "tflite", "jax2tf")}
# Edges that can export static shapes when their dynamic export fails (``EdgeContext.static_shapes``): the last
# rung of the remediation ladder, tried after every route with the source's dynamic axes has failed.
STATIC_CAPABLE: set[str] = set()


# What runs each format when parity checks it: its version decides the check too.
RUNTIMES = {"onnx": ("onnxruntime",), "onnx-fp16": ("onnxruntime",), "onnx-int8": ("onnxruntime",),
            "onnx-int4": ("onnxruntime",), "onnx-opt": ("onnxruntime",), "pt2": ("torch",), "tf": ("tensorflow",),
            "tflite": ("ai-edge-litert", "tensorflow"), "keras": ("keras", "tensorflow"),
            "tflite-int8": ("ai-edge-litert",), "tflite-fp16": ("ai-edge-litert",), "jax": ("jax", "jaxlib")}


def edge(source: str, target: str, *, name: str, dtype: str = "float32", primary: str,
         tools: tuple[str, ...] = (), alternative: bool = False, static_shapes: bool = False,
         tasks: tuple[str, ...] = (), pairs: bool = False) -> Callable:
    """Register ``fn`` as the converter from ``source`` to ``target``; ``tools``: the packages it uses.
    ``alternative``: one more route for the pair, tried before the planned chain (``routes``);
    ``static_shapes``: it honours ``EdgeContext.static_shapes`` (the ladder's last rung); ``tasks``: the only
    tasks whose models it converts (``require_tasks``); ``pairs``: it converts both files of an encoder-decoder
    (``pair_routes``)."""

    def register(fn: Callable[[Any, Path, EdgeContext], Path]) -> Callable:
        made = Edge(source, target, name, dtype, primary, fn, tools, tasks, pairs)
        if static_shapes:
            STATIC_CAPABLE.add(name)
        if alternative:
            ALTERNATIVES.setdefault((source, target), []).append(made)
        else:
            EDGES[(source, target)] = made
        return fn

    return register


def _load_edges() -> None:
    # importing the edge modules registers their edges; none imports a framework at module level
    from zoo.converters.edges import (  # noqa: F401
        from_jax,
        from_keras,
        from_torch,
        jax_export,
        jax_tf,
        litert,
        onnx_variants,
        pt2,
        tf,
    )


def formats() -> list[str]:
    """Every node of the graph, the in-memory sources (``torch``, ``keras-model``, ``jax-fn``) included."""
    _load_edges()
    return sorted({e.target for e in EDGES.values()} | {e.source for e in EDGES.values()})


# Nodes that are models in memory, never files: a conversion starts there, no request ends there.
SOURCE_ONLY = ("torch", "keras-model", "jax-fn")
# What users call a format, and the format zoo means by it (``--to torch``: a torch.export program).
FORMAT_ALIASES = {"torch": "pt2", "pytorch": "pt2", "torch.export": "pt2", "tensorflow": "tf",
                  "savedmodel": "tf", "saved_model": "tf"}


def target_formats() -> list[str]:
    """The formats a request may ask for: every node an edge produces."""
    _load_edges()
    return sorted({e.target for e in EDGES.values()} - set(SOURCE_ONLY))


def canonical_format(name: str) -> str:
    """``name`` with the aliases users type resolved (``torch``/``pytorch`` -> ``pt2``); others unchanged."""
    key = name.strip().lower() if isinstance(name, str) else name
    return FORMAT_ALIASES.get(key, name)


_ANY_TASK = "*"


def reachable(source: str, task: str | None = _ANY_TASK) -> list[str]:
    """Every format a chain from ``source`` reaches; with ``task``, only those whose chain converts a model of
    that task (``onnx-int4`` is for decoders: a classifier's matrix leaves it out)."""
    _load_edges()
    seen, queue = {source}, deque([source])
    while queue:
        node = queue.popleft()
        for (src, dst) in EDGES:
            if src == node and dst not in seen:
                seen.add(dst)
                queue.append(dst)
    found = sorted(seen - {source})
    if task == _ANY_TASK:
        return found
    return [fmt for fmt in found if not_applicable(plan(source, fmt), task) is None]


def plan(source: str, target: str) -> list[Edge]:
    """The shortest chain of edges from ``source`` to ``target`` (BFS, ties by name)."""
    _load_edges()
    previous: dict[str, Edge] = {}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        if node == target:
            break
        for key in sorted(EDGES):
            e = EDGES[key]
            if e.source == node and e.target not in previous and e.target != source:
                previous[e.target] = e
                queue.append(e.target)
    if target not in previous:
        raise errors.UnsupportedFormatError(
            f"no conversion from {source} to {target!r}",
            hint=f"formats reachable from {source}: {', '.join(reachable(source)) or 'none'}")
    chain = []
    node = target
    while node != source:
        chain.append(previous[node])
        node = previous[node].source
    return chain[::-1]


def routes(source: str, target: str) -> list[list[Edge]]:
    """Every chain zoo tries for ``source`` -> ``target``, in order; the pipeline keeps the first whose parity
    passes. The documented order: the shortest chain of ``plan`` first (torch -> onnx -> tflite through
    onnx2tf: it keeps a dynamic batch, which litert-torch 0.10 never exported for any family measured, so trying
    litert-torch first only cost every CNN a failed export), then chains through an alternative edge
    (litert-torch's direct torch -> tflite: it lowers the ``Where``/``Expand``/``Range`` patterns of
    transformers that onnx2tf stops at, with static shapes on the ladder's last rung). For ``tf`` the same rule
    gives onnx2tf first, then torch -> jax -> tf through jax2tf: onnx2tf's SavedModel holds plain TF ops (TFLite,
    TF.js and other TF tools read it), jax2tf's one XlaCallModule op only TF and TF Serving run, so jax2tf is the
    route for the families onnx2tf stops at (ViT, BERT-like, ConvNeXt). An alternative chain is a route only where
    it is no longer than the plan (torch -> onnx never detours through tflite), or a detour ``DETOURS`` names, tried
    last: tflite from a PyTorch model through jax2tf's SavedModel (torch -> jax -> tf -> tflite)."""
    base = plan(source, target)
    found: list[list[Edge]] = []
    detours: list[list[Edge]] = []
    for (src, dst), alternatives in sorted(ALTERNATIVES.items()):
        for alt in alternatives:
            try:
                head = plan(source, src) if src != source else []
                tail = plan(dst, target) if dst != target else []
            except errors.UnsupportedFormatError:
                continue
            chain = head + [alt] + tail
            if chain in found or chain in detours or chain == base:
                continue
            if len(chain) <= len(base):
                found.append(chain)
            elif any((source, e.target, alt.name) in DETOURS for e in tail):
                detours.append(chain)
    return [base] + found + detours


def pair_routes(chains: list[list[Edge]]) -> list[list[Edge]]:
    """The routes that keep an encoder-decoder's two files together: every edge converts the pair (``pairs``)."""
    return [c for c in chains if all(e.pairs for e in c)]


def require_format(target: str) -> None:
    """Fail fast, before any network or heavy work, on a format no edge produces."""
    known = target_formats()
    if canonical_format(target) not in known:
        raise errors.UnsupportedFormatError(f"format {target!r} is not supported",
                                            hint=f"formats: {', '.join(known)} (torch and pytorch mean pt2)")


def not_applicable(chain: list[Edge], task: str | None) -> str | None:
    """Why ``chain`` does not convert a model of ``task`` (an edge that serves only some tasks), or None."""
    for e in chain:
        if e.tasks and task not in e.tasks:
            return (f"{e.target} is for {' and '.join(e.tasks)} models (decoders checked by greedy generation); "
                    f"this model's task is {task or 'unknown'}")
    return None


def require_tasks(chain: list[Edge], task: str | None) -> None:
    """Refuse (exit 5), before any edge runs, a chain with an edge that does not serve ``task``."""
    why = not_applicable(chain, task)
    if why is not None:
        raise errors.UnsupportedError(why, hint="int4 weights are checked by greedy generation, which only decoders have: "
                                                "for a smaller file of this model pull onnx-int8 or onnx-fp16")


def run_chain(chain: list[Edge], source: Any, staging: Path, ctx: EdgeContext, progress: Any) -> list[Path]:
    """Run each edge into its own directory under ``staging``; every hop's primary file, in order."""
    require_tasks(chain, ctx.task)
    hops: list[Path] = []
    current = source
    for i, step in enumerate(chain):
        hop = staging / f"{i}-{step.target}"
        hop.mkdir()
        stage = "export" if step.source == "torch" else "convert"
        with progress.stage(stage, f"{step.source} -> {step.target} ({step.name})"):
            try:
                current = step.run(current, hop, ctx)
            except (errors.ZooError, MemoryError):
                raise
            except Exception as exc:  # an exporter's own crash is a failed conversion (exit 8), not zoo's
                if errors.storage_cause(exc) is not None:
                    raise  # a full disk is a StorageError, said as such by the caller
                raise errors.ConversionError(
                    f"{step.name} crashed converting {step.source} -> {step.target}: {type(exc).__name__}: "
                    f"{str(exc)[:400]}", hint="convert to another format, or report the model with this message "
                    "(ZOO_DEBUG=1 shows the traceback)", edge=f"{step.source}->{step.target}") from exc
        hops.append(current)
    return hops


def ladder(chains: list[list[Edge]]) -> list[tuple[list[Edge], str]]:
    """The remediation ladder: each route with the source's dynamic axes (the planned ONNX route re-exports
    with the other exporter inside the pipeline when TorchScript's result fails parity), then each route whose
    edges can export static shapes, with static shapes. Every rung is a real conversion with its own parity."""
    rungs = [(c, "route") for c in chains]
    rungs += [(c, "static shapes") for c in chains if any(e.name in STATIC_CAPABLE for e in c)]
    return rungs


def routes_name(chains: list[list[Edge]]) -> str:
    """The routes of a request in the order tried, for its cache key: the name of its one chain when it has one."""
    return " | ".join(f"{chain_name(c)} ({', '.join(e.name for e in c)})" if len(chains) > 1 else chain_name(c)
                      for c in chains)


def describe_edges(chain: list[Edge]) -> list[dict[str, str]]:
    return [{"from": e.source, "to": e.target, "tool": e.name, "dtype": e.dtype} for e in chain]


def chain_dtype(chain: list[Edge]) -> str:
    return max((e.dtype for e in chain), key=DTYPE_ORDER.index, default="float32")


def chain_name(chain: list[Edge]) -> str:
    return " -> ".join([chain[0].source] + [e.target for e in chain]) if chain else ""


def chain_tools(chain: list[Edge]) -> tuple[str, ...]:
    """Every package whose version can change a chain's result: its edges' tools and the runtime of its
    target (the cache key holds their versions, and no others)."""
    tools = {t for e in chain for t in e.tools}
    if chain:
        tools.update(RUNTIMES.get(chain[-1].target, ()))
    return tuple(sorted(tools))
