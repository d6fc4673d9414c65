"""Inputs for a model zoo knows only by its signature (an ONNX file, a SavedModel, a ``.tflite``, a ``.pt2``):
made up to look like what the model meets in use, and said so.

Rules, per input (the report's ``inputs`` says which applied):

- static dims are kept; dims that share a symbol get the same size; the first axis of every input of rank
  2 or more (and any dim sharing its symbol) is the batch: 2, 1, 3 in the three random sets;
- images (float or uint8, rank 4, 1 or 3 channels first or last): the size from ``zoo.preprocessing`` or an
  exporter's ``imgsz`` metadata, else the fixed dims, else 224 (640 for a declared detector); a dynamic side
  next to a fixed one of a text line (height <= 64) is 20/3 times as wide (48 -> 320); sizes are rounded
  up to the graph's total stride (strided Conv/pool nodes); pixels uniform in 0..1 (raw 0..255 for uint8),
  or standard normal when the preprocessing normalises; a sample set of photographs through that preprocessing;
- audio (float ``[samples]``, ``[batch, samples]`` or ``[batch, 1, samples]`` named like audio, or next to a
  sample-rate input): one second at the sample rate, noise at speech level; a sample set of synthesised speech;
- a sample-rate scalar (``sr``, ``sample_rate``, ...): 16000, or the values the graph compares it with;
- integer inputs that index a table (``Gather`` on a constant): uniform within the table; inputs the graph
  compares with constants: those values; attention masks: ones with right padding (rows of random
  length); token type ids: zeros; position ids: 0..length-1; uint8: bytes 0..255 (a sample set of text bytes);
- state inputs (``state``, ``h``, ``c``, ``*_cache``, ``past*``, ...): zeros, their unnamed dims sized with the batch;
- anything else: standard normal floats, integers in 0..100 (``*ids``) or 0..1, fair booleans; unnamed
  dims 16, 7 and 33.

When a reference runner is given, set 0 is tried on it first; when the source raises, unnamed dims are
tried at the batch size, then at 1, and the first the source runs on is kept (a state's batch axis).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from zoo import errors
from zoo.converters.parity.specs import InputRequest

if TYPE_CHECKING:

    from zoo.converters.parity.report import InputSet

SEEDS, BATCHES = (0, 1, 2), (2, 1, 3)
TOKENS = (16, 7, 33)
DEFAULT_RATE = 16000
_RATE_NAME = re.compile(r"(^|[_.])(sr|fs|rate|sample_?rate|sampling_?rate)$", re.I)
_STATE_NAME = re.compile(r"((^|[_.])(state|cache|memory)$|^(h|c|hx|cx|h0|c0|hn|cn)$|^past)", re.I)
_AUDIO_NAME = re.compile(r"(audio|wav|wave|pcm|speech|signal|input_values|waveform|samples|raw)", re.I)
_FEATURE_NAME = re.compile(r"(feat|fbank|mel|spectrogram|input_features)", re.I)
_BATCH_SYMBOLS = frozenset({"batch", "batch_size", "n", "b", "bs", "batchsize"})
_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand", "Transpose", "Slice"}
_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}


# --- what the graph says -----------------------------------------------------------------------------
@dataclass
class GraphFacts:
    tables: dict[str, int] = field(default_factory=dict)  # input -> rows of the table it indexes
    compared: dict[str, list[float]] = field(default_factory=dict)  # input -> constants it is compared with
    stride: int = 1  # the largest total stride of strided Conv/pool nodes (an image side must be a multiple)


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                nodes.extend(_all_nodes(sub))
    return nodes


def graph_facts(model: Any) -> GraphFacts:
    """Tables indexed by inputs, constants inputs are compared with, and the graph's total stride."""
    from onnx import numpy_helper

    nodes = _all_nodes(model.graph)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    values = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]], values[node.output[0]] = list(attr.t.dims), attr.t
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in nodes:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    facts = GraphFacts(stride=_total_stride(model.graph, set(shapes)))
    for item in model.graph.input:
        for node, index in _uses(item.name, consumers):
            if node.op_type == "Gather" and index == 1 and node.input[0] in shapes:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                dims = shapes[node.input[0]]
                if dims and -len(dims) <= axis < len(dims):
                    facts.tables[item.name] = max(facts.tables.get(item.name, 0), int(dims[axis]))
            elif node.op_type in _COMPARE:
                other = node.input[1 - index] if len(node.input) == 2 else ""
                if other in values and int(math.prod(shapes[other])) == 1:
                    value = float(numpy_helper.to_array(values[other]).reshape(-1)[0])
                    facts.compared.setdefault(item.name, [])
                    if value not in facts.compared[item.name]:
                        facts.compared[item.name].append(value)
    return facts


def _uses(name: str, consumers: dict[str, list[tuple[Any, int]]]) -> list[tuple[Any, int]]:
    """Where ``name`` is used, looking through casts and reshapes of it."""
    seen, frontier, uses = {name}, [name], []
    while frontier:
        for node, index in consumers.get(frontier.pop(), []):
            if node.op_type in _PASS_THROUGH and index == 0:
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        frontier.append(out)
            else:
                uses.append((node, index))
    return uses


def _total_stride(graph: Any, constants: set[str]) -> int:
    stride: dict[str, float] = {i.name: 1.0 for i in graph.input}
    worst = 1.0
    for node in graph.node:
        known = [stride[n] for n in node.input if n in stride and n not in constants]
        s = max(known, default=1.0)
        attrs = {a.name: list(a.ints) for a in node.attribute if a.ints}
        if node.op_type in ("Conv", "MaxPool", "AveragePool", "LpPool") and attrs.get("strides"):
            s *= max(attrs["strides"])
        elif node.op_type == "ConvTranspose" and attrs.get("strides"):
            s /= max(attrs["strides"])
        elif node.op_type in ("Resize", "Upsample"):
            s /= 2.0
        for out in node.output:
            stride[out] = s
        worst = max(worst, s)
    return max(1, int(round(worst)))


# --- one plan per input --------------------------------------------------------------------------------
@dataclass
class Plan:
    name: str
    dtype: str
    dims: list[Any]  # int (fixed) or a size key ("batch", a symbol, "name:axis")
    role: str  # image | audio | features | ids | mask | type_ids | position_ids | bytes | rate | state | generic
    rule: dict[str, Any]  # how values are drawn
    how: str = ""
    layout: str = "NCHW"  # images


@dataclass
class Plans:
    inputs: list[Plan]
    sizes: dict[str, list[int]]  # key -> size in each random set
    explain: dict[str, str]  # key -> why that size
    metadata: dict[str, str]
    anonymous: list[str]  # keys of unnamed dims zoo guessed (tried again at the batch size, then 1)

    def notes(self) -> dict[str, str]:
        out = {}
        for p in self.inputs:
            dims = [d if isinstance(d, int) else f"{_label(d)}={'/'.join(str(v) for v in self.sizes[d])}" for d in p.dims]
            shape = "scalar" if not dims else "[" + ", ".join(str(d) for d in dims) + "]"
            why = "; ".join(dict.fromkeys(self.explain[d] for d in p.dims if isinstance(d, str) and self.explain.get(d)))
            out[p.name] = f"{p.dtype} {shape}: {p.how}" + (f" ({why})" if why else "")
        return out


def _label(key: str) -> str:
    return key.split(":")[0] if key.startswith("~") else key


def plan_inputs(spec: list[dict[str, Any]], metadata: dict[str, str] | None = None, model: Any = None,
                request: InputRequest | None = None) -> Plans:
    """How to make each input of ``spec`` (name, shape with None or symbols for dynamic dims, dtype)."""
    metadata = dict(metadata or {})
    request = request or InputRequest()
    known = {s["name"] for s in spec}
    unknown = [s.name for s in request.specs if s.name not in known]
    if unknown:
        raise errors.UsageError(f"--input {', '.join(unknown)}: the model has no such input",
                                hint=f"its inputs are {', '.join(s['name'] for s in spec)}")
    facts = graph_facts(model) if model is not None else GraphFacts()
    has_rate = any(_is_rate(s) for s in spec)
    batch_symbols = {d for s in spec if len(s["shape"]) >= 2 for d in s["shape"][:1] if isinstance(d, str) and d}
    plans = [_plan_one(s, facts, has_rate, batch_symbols, metadata) for s in spec]
    for plan in plans:
        given = request.spec(plan.name)
        if given is not None:
            _apply_given(plan, given)
    return _size_keys(plans, facts, metadata)


def _is_rate(item: dict[str, Any]) -> bool:
    return len(item["shape"]) <= 1 and all(isinstance(d, int) and d == 1 for d in item["shape"]) \
        and bool(_RATE_NAME.search(item["name"]))


def _dim_keys(item: dict[str, Any], role: str, batch_symbols: set[str], layout: str) -> list[Any]:
    shape, name = item["shape"], item["name"]
    keys: list[Any] = []
    shared = {"ids": "~tokens", "mask": "~tokens", "type_ids": "~tokens", "position_ids": "~tokens",
              "audio": "~samples", "bytes": "~tokens"}
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0:
            keys.append(dim)
        elif isinstance(dim, str) and dim and (dim in batch_symbols or dim.lower() in _BATCH_SYMBOLS):
            keys.append("batch")
        elif isinstance(dim, str) and dim:
            keys.append(dim)
        elif axis == 0 and len(shape) >= 2:
            keys.append("batch")
        elif role == "image":
            keys.append("~height" if axis == (2 if layout == "NCHW" else 1) else "~width")
        elif role in shared and axis == len(shape) - 1:
            keys.append(shared[role])
        elif len(shape) == 1 and role not in ("audio",):
            keys.append("batch")
        else:
            keys.append(f"~{name}:{axis}")
    return keys


def _plan_one(item: dict[str, Any], facts: GraphFacts, has_rate: bool, batch_symbols: set[str],
              metadata: dict[str, str]) -> Plan:
    name, shape, dtype = item["name"], item["shape"], item["dtype"]
    lower = name.lower()
    floaty = dtype.startswith("float") or dtype == "bfloat16"
    role, rule, how, layout = "generic", {"kind": "normal"}, "standard normal", "NCHW"
    image = _image_layout(shape, dtype) if not ("mask" in lower or _STATE_NAME.search(name)) else None
    if image:
        role, layout = "image", image
        normalised = "input_size" in json.loads(metadata.get("zoo.preprocessing") or "{}")
        if dtype == "uint8":
            rule, how = {"kind": "int", "low": 0, "high": 256}, "an image: raw pixels 0..255"
        elif normalised:
            rule, how = {"kind": "normal"}, "an image after the model's own normalisation (zoo.preprocessing): standard normal"
        else:
            rule, how = {"kind": "uniform", "low": 0.0, "high": 1.0}, "an image: pixels uniform in 0..1"
    elif _is_rate(item):
        values = facts.compared.get(name) or [DEFAULT_RATE]
        preferred = DEFAULT_RATE if DEFAULT_RATE in values else values[0]
        role, rule = "rate", {"kind": "value", "value": preferred}
        how = f"a sample rate: {preferred:g}" + (f" (the graph compares it with {sorted(values)})" if name in facts.compared else "")
    elif floaty and _STATE_NAME.search(name):
        role, rule, how = "state", {"kind": "zeros"}, "a recurrent state: zeros, as at the start of a stream"
    elif floaty and _is_audio(shape, name, has_rate):
        role, rule, how = "audio", {"kind": "normal", "scale": 0.1}, "audio: noise at speech level (std 0.1)"
    elif floaty and len(shape) == 3 and isinstance(shape[-1], int) and _FEATURE_NAME.search(name):
        role, how = "features", "audio features (frames x bins): standard normal"
    elif dtype == "bool":
        fill = False if "pad" in lower else True if "mask" in lower else None
        rule = {"kind": "fill", "value": fill} if fill is not None else {"kind": "bool"}
        how = f"all {fill}" if fill is not None else "fair coin flips"
    elif not floaty:
        role, rule, how = _integer_rule(name, lower, dtype, shape, facts)
    dims = _dim_keys(item, role, batch_symbols, layout)
    return Plan(name, dtype, dims, role, rule, how, layout)


def _integer_rule(name: str, lower: str, dtype: str, shape: list[Any], facts: GraphFacts) -> tuple[str, dict, str]:
    table = facts.tables.get(name)
    if "mask" in lower:
        return "mask", {"kind": "mask"}, "an attention mask: ones, rows right-padded with zeros to random lengths"
    if "position" in lower and len(shape) >= 1:
        return "position_ids", {"kind": "positions"}, "positions 0..length-1"
    if "type" in lower or "segment" in lower:
        return "type_ids", {"kind": "value", "value": 0}, "token type ids: zeros (one segment)"
    if name in facts.compared:
        values = sorted(facts.compared[name])
        return "generic", {"kind": "choice", "values": values}, f"the values the graph compares it with: {values}"
    if dtype == "uint8" or (table in (256, 257) and "byte" in lower):
        high = table or 256
        return "bytes", {"kind": "int", "low": 0, "high": high}, f"bytes: uniform in 0..{high - 1}"
    if table:
        role = "ids" if len(shape) >= 1 else "generic"
        return role, {"kind": "int", "low": 0, "high": table}, f"indices into a table of {table} rows: uniform in 0..{table - 1}"
    if "ids" in lower or "token" in lower:
        return "ids", {"kind": "int", "low": 0, "high": 100}, "ids: uniform in 0..99 (no table found in the graph)"
    return "generic", {"kind": "int", "low": 0, "high": 2}, "integers 0..1 (nothing in the graph says more)"


def _image_layout(shape: list[Any], dtype: str) -> str | None:
    if len(shape) != 4 or not (dtype.startswith("float") or dtype == "uint8"):
        return None
    first, last = shape[1], shape[3]
    if first in (1, 3) and not (isinstance(last, int) and last in (1, 3)):
        return "NCHW"
    if last in (1, 3) and not isinstance(first, int) or (last in (1, 3) and first not in (1, 3)):
        return "NHWC"
    return None


def _is_audio(shape: list[Any], name: str, has_rate: bool) -> bool:
    """A waveform: named like one (or beside a sample-rate input), samples last (dynamic, or >= 256 fixed)."""
    if not shape or not 1 <= len(shape) <= 3 or isinstance(shape[-1], int) and shape[-1] < 256:
        return False
    if len(shape) == 3 and shape[1] != 1:
        return False
    return has_rate or bool(_AUDIO_NAME.search(name))


def _apply_given(plan: Plan, given: Any) -> None:
    if given.dtype:
        plan.dtype = given.dtype
    if given.shape is not None:
        plan.dims = [d if isinstance(d, int) else ("batch" if d.lower() in _BATCH_SYMBOLS else d) for d in given.shape]
    if given.values:
        plan.rule = {"kind": "choice", "values": list(given.values)}
    elif given.low is not None:
        integer = not (plan.dtype.startswith("float") or plan.dtype == "bfloat16")
        plan.rule = {"kind": "int" if integer else "uniform", "low": given.low, "high": given.high}
    plan.how = given.describe()
    plan.role = plan.role if given.values == () and given.low is None else "given"


# --- sizes ---------------------------------------------------------------------------------------------------
_ROLE_ORDER = ("given", "image", "audio", "features", "ids", "mask", "type_ids", "position_ids", "bytes", "state",
               "generic", "rate")


def _size_keys(plans: list[Plan], facts: GraphFacts, metadata: dict[str, str]) -> Plans:
    users: dict[str, list[Plan]] = {}
    for plan in plans:
        for d in plan.dims:
            if isinstance(d, str):
                users.setdefault(d, []).append(plan)
    sizes: dict[str, list[int]] = {}
    explain: dict[str, str] = {}
    anonymous: list[str] = []
    image = next((p for p in plans if p.role == "image"), None)
    hw = _image_size(image, facts, metadata) if image else None
    for key, owners in users.items():
        role = min((p.role for p in owners), key=_ROLE_ORDER.index)
        if key == "batch":
            sizes[key], explain[key] = list(BATCHES), ""
        elif role == "image" and hw:
            side = 0 if _is_height(image, key) else 1
            sizes[key], explain[key] = [hw[side]] * 3, hw[2]
        elif role == "audio":
            length = DEFAULT_RATE
            sizes[key], explain[key] = [length] * 3, f"{key.strip('~')}: one second at {DEFAULT_RATE} Hz"
        elif role == "features":
            sizes[key], explain[key] = [100, 50, 150], f"{key.strip('~')}: 1 s, 0.5 s, 1.5 s of 10 ms frames"
        elif role in ("ids", "mask", "type_ids", "position_ids", "bytes"):
            sizes[key], explain[key] = list(TOKENS), ""
        else:
            what = "unnamed" if key.startswith("~") else f"the symbol {key!r} says nothing of its size"
            sizes[key], explain[key] = list(TOKENS), f"{_label(key).strip('~')}: {what}, guessed"
            anonymous.append(key)  # tried again at the batch size, then 1, if the source raises
    return Plans(plans, sizes, explain, metadata, anonymous)


def _is_height(plan: Plan, key: str) -> bool:
    spatial = [d for i, d in enumerate(plan.dims) if (i in (2, 3) if plan.layout == "NCHW" else i in (1, 2))]
    return bool(spatial) and spatial[0] == key


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _image_size(plan: Plan, facts: GraphFacts, metadata: dict[str, str]) -> tuple[int, int, str]:
    spatial = plan.dims[2:4] if plan.layout == "NCHW" else plan.dims[1:3]
    h, w = (d if isinstance(d, int) else None for d in spatial)
    stride = facts.stride
    pre = json.loads(metadata.get("zoo.preprocessing") or "{}")
    declared = [int(v) for v in re.findall(r"\d+", metadata.get("imgsz", ""))][:2]
    if pre.get("input_size"):
        _, ph, pw = pre["input_size"]
        return h or ph, w or pw, f"image size {ph}x{pw} from zoo.preprocessing"
    if declared:
        dh, dw = declared if len(declared) == 2 else declared * 2
        return h or dh, w or dw, f"image size {dh}x{dw} from the model's imgsz metadata"
    multiple = f", a multiple of the graph's stride {stride}" if stride > 1 else ""
    if h and not w:
        width = _round_up(h * 20 / 3, stride) if h <= 64 else _round_up(h, stride)
        return h, width, f"height fixed at {h}, width {width}{' as a text line' if h <= 64 else ''}{multiple}"
    if w and not h:
        return _round_up(w, stride), w, f"width fixed at {w}, height {_round_up(w, stride)}{multiple}"
    if h and w:
        return h, w, f"image size {h}x{w} fixed by the graph"
    task = (metadata.get("zoo.task") or metadata.get("task") or "").lower()
    side = _round_up(640 if task in ("detect", "object-detection", "detection") else 224, stride)
    return side, side, f"dynamic image size: {side}x{side}{' (a detector)' if side >= 640 else ''}{multiple}"


# --- making the sets -------------------------------------------------------------------------------------------
def random_sets(plans: Plans) -> list[InputSet]:
    import numpy as np

    from zoo.converters.parity.report import InputSet

    sets = []
    for index, (seed, batch) in enumerate(zip(SEEDS, BATCHES)):
        rng = np.random.default_rng(seed)
        sizes = {key: values[index] for key, values in plans.sizes.items()}
        feeds = make_feeds(np, rng, plans, sizes, index)
        sets.append(InputSet(f"random-b{batch}-s{seed}", feeds, kind="random"))
    return sets


def make_feeds(np: Any, rng: Any, plans: Plans, sizes: dict[str, int], index: int,
           override: dict[str, Any] | None = None) -> dict[str, Any]:
    """One set's arrays; ``override``: arrays already made (a sample's), kept as they are."""
    padded = any(p.rule["kind"] == "mask" for p in plans.inputs)
    lengths: dict[Any, Any] = {} if padded else {"off": True}
    feeds = {}
    for plan in plans.inputs:
        shape = tuple(d if isinstance(d, int) else sizes[d] for d in plan.dims)
        if override and plan.name in override:
            feeds[plan.name] = override[plan.name]
            continue
        feeds[plan.name] = _values(np, rng, plan, shape, index, lengths)
    return feeds


def _values(np: Any, rng: Any, plan: Plan, shape: tuple[int, ...], index: int, lengths: dict[str, Any]) -> Any:
    rule, dtype = plan.rule, np.dtype("bool" if plan.dtype == "bool" else plan.dtype)
    kind = rule["kind"]
    if "off" not in lengths and (kind == "mask" or plan.role in ("ids", "type_ids")) and len(shape) == 2:
        key = (shape[0], shape[-1])
        if key not in lengths:  # one padding pattern per batch shape: ids, mask and type ids agree
            rows = rng.integers(max(1, key[1] // 2), key[1] + 1, size=key[0])
            rows[0] = key[1]  # one full row, as a batch padded to its longest sentence has
            lengths[key] = np.arange(key[1])[None, :] < rows[:, None]
    if kind == "normal":
        return (rng.standard_normal(shape) * rule.get("scale", 1.0)).astype(dtype)
    if kind == "uniform":
        return rng.uniform(rule["low"], rule["high"], shape).astype(dtype)
    if kind == "int":
        values = rng.integers(int(rule["low"]), int(rule["high"]), shape).astype(dtype)
        if plan.role == "ids" and len(shape) == 2 and (shape[0], shape[-1]) in lengths:
            values = np.where(lengths[(shape[0], shape[-1])], values, 0).astype(dtype)
        return values
    if kind == "mask":
        real = lengths.get((shape[0], shape[-1])) if len(shape) == 2 else None
        return (np.ones(shape, bool) if real is None else real).astype(dtype)
    if kind == "positions":
        return np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype)
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "value":
        return np.full(shape, rule["value"], dtype)
    if kind == "fill":
        return np.full(shape, rule["value"], dtype)
    if kind == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if kind == "choice":
        return np.full(shape, rule["values"][index % len(rule["values"])], dtype)
    raise errors.UsageError(f"input {plan.name!r}: no way to draw values of kind {kind!r}")


def probe(plans: Plans, reference: Callable[[dict[str, Any]], Any]) -> tuple[Plans, str | None]:
    """Try set 0 on the source; when it raises, try the unnamed dims at the batch size, then at 1. Returns
    the plans the source runs on (or the first ones) and the source's error when none works."""
    first_error = None
    for guess in ([None, "batch", 1] if plans.anonymous else [None]):
        trial = _with_anonymous(plans, guess)
        try:
            reference(random_sets(trial)[0].feeds)
            return trial, None
        except Exception as exc:  # noqa: BLE001 - the source's own failure, diagnosed by the caller
            first_error = first_error or f"{type(exc).__name__}: {str(exc)[:600]}"
    return plans, first_error


def _with_anonymous(plans: Plans, guess: Any) -> Plans:
    if guess is None:
        return plans
    sizes, explain = dict(plans.sizes), dict(plans.explain)
    for key in plans.anonymous:
        sizes[key] = list(BATCHES) if guess == "batch" else [1, 1, 1]
        what = "the batch size" if guess == "batch" else "1"
        explain[key] = f"{_label(key).strip('~')}: unnamed; {what}, the first size the source model runs on"
    return Plans(plans.inputs, sizes, explain, plans.metadata, plans.anonymous)


def inputs_reaching(model: Any, node_name: str) -> list[str]:
    """The graph inputs a node (by name, in any subgraph) depends on."""
    nodes = _all_nodes(model.graph)
    producer = {out: node for node in nodes for out in node.output}
    inputs = {i.name for i in model.graph.input}
    target = next((n for n in nodes if n.name == node_name), None)
    if target is None:
        return []
    seen, frontier, found = set(), list(target.input), []
    for attr in target.attribute:  # an If/Loop body reads outer tensors by name
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            frontier.extend(name for node in _all_nodes(sub) for name in node.input)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.append(name)
        elif name in producer:
            frontier.extend(producer[name].input)
    return [i.name for i in model.graph.input if i.name in found]
