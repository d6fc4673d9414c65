"""JAX functions and Flax modules in memory, and Flax checkpoints read as data.

``JaxFunction`` is what the graph's ``jax-fn`` node holds: a function of ``(params, *inputs)``, its
parameters (any pytree of arrays) and its input spec. It comes from Python (``zoo.convert_jax``) or from a
Flax module the user names (``zoo import DIR --arch flax:package.module:Class``), rebuilt with
:func:`flax_function`. Naming a module is running its code: zoo imports a module only when the user named
it on the command line or in Python, never because a downloaded file says so (``flax_config.json`` holds
data only: constructor arguments and the input spec).

Checkpoints are data: :func:`read_msgpack` decodes Flax's msgpack itself (only the ndarray and numpy
scalar extension types, numeric dtypes, sizes checked before any array is made); :func:`read_orbax`
refuses links, files outside the directory and tree keys that are paths before orbax reads the arrays.
jax and flax are imported inside the functions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import errors

# dtypes a checkpoint's arrays may have: numbers only (no object, no structured, no void)
ARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "bfloat16", "float32", "float64", "complex64", "complex128")
_NDARRAY, _NPSCALAR = 1, 3  # flax.serialization's extension type codes (2, native complex, is never written for arrays)
_MAX_RANK = 32
_CHUNKED = "__msgpack_chunked_array__"
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
CONFIG_FILE = "flax_config.json"  # data: constructor arguments, input spec, output names
PARAMS_FILE = "params.msgpack"  # the parameters zoo wrote at import, matched to the module's tree


@dataclass
class JaxFunction:
    """A JAX function of ``(params, *inputs)`` with its parameters: the ``jax-fn`` node of the graph."""

    fn: Callable[..., Any]
    params: Any  # a pytree of arrays
    input_spec: list[dict[str, Any]]  # name, shape (a str is a dynamic axis), dtype
    output_names: list[str] = field(default_factory=list)
    label: str = "jax function"

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.input_spec]

    def example(self) -> list[Any]:
        """Zeros at the spec's shapes (dynamic axes at 2): what traces the function."""
        import numpy as np

        return [np.zeros([d if isinstance(d, int) else 2 for d in s["shape"]], np_dtype(s["dtype"])) for s in self.input_spec]


def np_dtype(name: str) -> Any:
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def jit_runner(jf: JaxFunction) -> Callable[[dict[str, Any]], list[Any]]:
    """feeds -> outputs of ``jax.jit(fn)(params, *inputs)``: the truth a JAX source is checked against."""
    import jax
    import numpy as np

    jitted = jax.jit(jf.fn)

    def run(feeds: dict[str, Any]) -> list[Any]:
        out = jitted(jf.params, *[feeds[n] for n in jf.input_names])
        return [np.asarray(o) for o in jax.tree_util.tree_leaves(out)]

    return run


def function_digest(jf: JaxFunction) -> str:
    """The identity of a JAX function with its parameters: its jaxpr (the computation), the bytes of its
    parameters and of the constants it closes over, and its input spec. The same computation on the same
    weights gives the same digest in any process."""
    import hashlib

    import jax
    import numpy as np

    closed = jax.make_jaxpr(jf.fn)(jf.params, *jf.example())
    h = hashlib.sha256()
    h.update(json.dumps(jf.input_spec, sort_keys=True).encode())
    h.update(str(closed.jaxpr).encode())
    leaves, treedef = jax.tree_util.tree_flatten_with_path(jf.params)
    h.update(str(treedef).encode())
    for path, leaf in leaves:
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    for const in closed.consts:
        a = np.asarray(const)
        h.update(f"const|{a.dtype}|{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def spec_from_example(example: Any, names: list[str] | None, dynamic_batch: bool) -> list[dict[str, Any]]:
    """The input spec of example arrays: their shapes and dtypes, the first axis a dynamic ``batch``."""
    import numpy as np

    arrays = list(example) if isinstance(example, (list, tuple)) else [example]
    if not arrays:
        raise errors.UsageError("convert_jax needs at least one example input")
    names = list(names) if names else (["input"] if len(arrays) == 1 else [f"input_{i}" for i in range(len(arrays))])
    if len(names) != len(arrays) or len(set(names)) != len(names):
        raise errors.UsageError(f"input_names {names} do not name the {len(arrays)} example inputs one each")
    spec = []
    for name, a in zip(names, arrays):
        a = np.asarray(a)
        if a.dtype.name not in ARRAY_DTYPES:
            raise errors.UsageError(f"example input {name!r} has dtype {a.dtype}: zoo converts numeric inputs only")
        shape: list[Any] = list(a.shape)
        if dynamic_batch and shape:
            shape[0] = "batch"
        spec.append({"name": name, "shape": shape, "dtype": a.dtype.name})
    return spec


# --- Flax modules ----------------------------------------------------------------------------------------
def module_class(spec: str) -> Any:
    """The Flax module class ``package.module:Class`` names (imported: the user named it to be run)."""
    import importlib

    if not MODULE_RE.match(spec or ""):
        raise errors.UsageError(f"--arch flax:{spec}: name the module as flax:package.module:ClassName",
                                hint="the module must be importable here (on PYTHONPATH), e.g. --arch flax:mymodels.mlp:MLP")
    module_name, attr = spec.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.UsageError(f"cannot import {module_name} (from --arch flax:{spec}): {exc}",
                                hint="install the package holding the module, or add its folder to PYTHONPATH") from exc
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    kind = module_kind(obj)
    if kind is None:
        raise errors.UsageError(f"{spec} is not a Flax module class (flax.nnx.Module or flax.linen.Module)",
                                hint="name the class whose instance the checkpoint was saved from")
    return obj


def module_kind(obj: Any) -> str | None:
    from flax import linen, nnx

    if isinstance(obj, type) and issubclass(obj, nnx.Module):
        return "nnx"
    if isinstance(obj, type) and issubclass(obj, linen.Module):
        return "linen"
    return None


def flax_template(cls: Any, kwargs: dict[str, Any], spec: list[dict[str, Any]]) -> tuple[Callable, Any, set]:
    """``(fn, params, ignored)`` of a freshly built module: ``fn(params, *inputs)`` runs it in inference
    mode, ``params`` is the tree a checkpoint must fill (NNX: every variable but RNG state; Linen: its
    variables), ``ignored`` the paths a checkpoint may also hold that inference never reads (NNX RNG state:
    ``nnx.state(model)`` saved whole)."""
    import jax

    kwargs = dict(kwargs)
    try:
        if module_kind(cls) == "nnx":
            from flax import nnx

            model = cls(**kwargs, rngs=nnx.Rngs(0))
            model.eval()  # dropout off, batch norm on its running averages
            graphdef, params, rest = nnx.split(model, nnx.Not(nnx.RngState), ...)

            def fn(p: Any, *inputs: Any) -> Any:
                return nnx.merge(graphdef, p, rest)(*inputs)

            return fn, params, set(flat_tree(rest))
        module = cls(**kwargs)
        example = JaxFunction(lambda p: p, None, spec).example()
        variables = jax.eval_shape(module.init, jax.random.key(0), *example)
        return (lambda v, *inputs: module.apply(v, *inputs)), variables, set()
    except errors.ZooError:
        raise
    except Exception as exc:
        raise errors.SourceModelError(f"building {cls.__module__}.{cls.__qualname__}(**{kwargs}) failed: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}",
                                      hint=f"check 'kwargs' and 'inputs' in {CONFIG_FILE}") from exc


def _path_key(path: tuple) -> tuple[str, ...]:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(str(getattr(k, attr)))
                break
        else:
            out.append(str(k))
    return tuple(out)


def _strip_value(key: tuple[str, ...]) -> tuple[str, ...]:
    """NNX writes a variable as ``.../value`` in some savers (orbax) and bare in others (to_pure_dict)."""
    return key[:-1] if len(key) > 1 and key[-1] == "value" else key


def flat_tree(tree: Any) -> dict[tuple[str, ...], Any]:
    """``{path of str keys: leaf}`` of a nested dict (a checkpoint) or any pytree (a template)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_strip_value(_path_key(p)): leaf for p, leaf in leaves}


def fill_params(template: Any, checkpoint: dict[str, Any], what: str, ignored: set | frozenset = frozenset()) -> Any:
    """``template`` with every leaf taken from ``checkpoint`` (matched by path); missing or unexpected
    names, shape and dtype mismatches are one error listing them (exit 7), never a half-loaded model."""
    import jax
    import numpy as np

    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    wanted = {_strip_value(_path_key(p)): leaf for p, leaf in leaves}
    got = flat_tree(checkpoint)
    got = max(_candidates(got, set(wanted)), key=lambda c: len(set(c) & set(wanted)))
    missing = sorted("/".join(k) for k in wanted if k not in got)
    unexpected = sorted("/".join(k) for k in got if k not in wanted and k not in ignored)
    mismatched = []
    for k, leaf in wanted.items():
        if k in got:
            a = got[k]
            if tuple(a.shape) != tuple(leaf.shape) or np.dtype(a.dtype) != np.dtype(leaf.dtype):
                mismatched.append(f"{'/'.join(k)}: checkpoint {a.dtype}{list(a.shape)}, module {leaf.dtype}{list(leaf.shape)}")
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing ({', '.join(missing[:12])})" if missing else "",
                 f"{len(unexpected)} unexpected ({', '.join(unexpected[:12])})" if unexpected else "",
                 f"{len(mismatched)} mismatched ({'; '.join(mismatched[:12])})" if mismatched else ""]
        raise errors.InvalidModelError(f"{what} does not fit the module: " + ", ".join(p for p in parts if p),
                                       hint="name the class and constructor arguments the checkpoint was saved from "
                                            f"(--arch, 'kwargs' in {CONFIG_FILE})",
                                       missing=missing, unexpected=unexpected, mismatched=mismatched)
    values = [np.asarray(got[_strip_value(_path_key(p))]) for p, _ in leaves]
    return jax.tree_util.tree_unflatten(treedef, values)


def _candidates(got: dict[tuple, Any], wanted: set[tuple]) -> list[dict[tuple, Any]]:
    """The checkpoint's paths as saved, without one wrapping level (``{"params": ...}``, ``{"model": ...}``),
    and under Linen's ``params`` collection (a bare parameter tree)."""
    out = [got]
    tops = {k[0] for k in got if k}
    if len(tops) == 1 and all(len(k) > 1 for k in got):
        out.append({k[1:]: v for k, v in got.items()})
    if {k[0] for k in wanted if k} == {"params"}:
        out.append({("params", *k): v for k, v in got.items()})
    return out


def flax_function(root: Path, spec: str) -> JaxFunction:
    """The imported Flax model at ``root`` (``flax_config.json`` + ``params.msgpack`` zoo wrote) as a
    ``JaxFunction``: the module ``spec`` names, built with the recorded arguments, its parameters filled."""
    config = read_config(root / CONFIG_FILE)
    cls = module_class(spec)
    fn, template, _ignored = flax_template(cls, config.get("kwargs") or {}, config["inputs"])
    params = fill_params(template, read_msgpack(root / PARAMS_FILE, (root / PARAMS_FILE).stat().st_size),
                         PARAMS_FILE)
    return JaxFunction(fn, params, config["inputs"], list(config.get("outputs") or []), label=spec)


def read_config(path: Path) -> dict[str, Any]:
    """``flax_config.json``: ``kwargs`` (JSON values), ``inputs`` (name, shape, dtype), ``outputs`` (names)."""
    if not path.is_file():
        raise errors.InvalidModelError(f"{path.parent} has no {CONFIG_FILE}",
                                       hint=CONFIG_HINT)
    config = _read_json(path, CONFIG_FILE)
    inputs = config.get("inputs") if isinstance(config, dict) else None
    ok = isinstance(inputs, list) and inputs and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("shape"), list)
        and all(isinstance(d, str) or (isinstance(d, int) and d > 0) for d in i["shape"])
        and i.get("dtype", "float32") in ARRAY_DTYPES for i in inputs)
    if not ok or not isinstance(config.get("kwargs", {}), dict) or not isinstance(config.get("outputs", []), list):
        raise errors.InvalidModelError(f"{CONFIG_FILE} is not valid", hint=CONFIG_HINT)
    for i in inputs:
        i.setdefault("dtype", "float32")
    return config


CONFIG_HINT = ('write flax_config.json beside the checkpoint: {"kwargs": {...constructor arguments...}, '
               '"inputs": [{"name": "x", "shape": ["batch", 16], "dtype": "float32"}], "outputs": ["logits"]}')


def _read_json(path: Path, name: str, limit: int = 64 << 20) -> Any:
    if path.stat().st_size > limit:
        raise errors.UnsafeModelError(f"refusing {name}: over {limit} bytes of JSON")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise errors.InvalidModelError(f"{name} is not valid JSON: {str(exc)[:200]}") from None


# --- checkpoints as data ---------------------------------------------------------------------------------
def read_msgpack(path: Path, max_bytes: int, max_arrays: int = 100_000) -> dict[str, Any]:
    """A Flax msgpack checkpoint (``flax.serialization.to_bytes`` / ``msgpack_serialize``) decoded as data:
    maps, lists, numbers, strings and numeric arrays. Any other extension type, an object or unknown dtype,
    an array whose bytes do not match its declared shape, a file over ``max_bytes`` or more than
    ``max_arrays`` arrays is refused before anything is built (exit 7)."""
    import msgpack
    import numpy as np

    name = path.name
    size = path.stat().st_size
    if size > max_bytes:
        raise errors.UnsafeModelError(f"refusing {name}: {size} bytes is over the limit of {max_bytes} (ZOO_FLAX_MAX_BYTES)")
    count = [0]

    def array(code: int, payload: bytes) -> Any:
        if code not in (_NDARRAY, _NPSCALAR):
            raise errors.UnsafeModelError(f"refusing {name}: it holds msgpack extension type {code}, "
                                          "which a Flax checkpoint never writes")
        count[0] += 1
        if count[0] > max_arrays:
            raise errors.UnsafeModelError(f"refusing {name}: more than {max_arrays} arrays")
        try:
            shape, dtype, buf = msgpack.unpackb(payload, raw=True, use_list=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise errors.InvalidModelError(f"cannot read {name}: an array record is malformed ({exc})") from None
        dtype = dtype.decode("ascii", "replace") if isinstance(dtype, bytes) else dtype
        if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
            raise errors.UnsafeModelError(f"refusing {name}: an array has dtype {str(dtype)[:40]!r}; "
                                          f"a checkpoint holds numbers only ({', '.join(ARRAY_DTYPES)})")
        if (not isinstance(shape, list) or len(shape) > _MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise errors.UnsafeModelError(f"refusing {name}: an array declares the shape {str(shape)[:80]}")
        array_dtype = np_dtype(dtype)
        expected = math.prod(shape) * np.dtype(array_dtype).itemsize
        if not isinstance(buf, bytes) or len(buf) != expected:
            raise errors.UnsafeModelError(f"refusing {name}: an array declares {dtype}{shape} ({expected} bytes) "
                                          f"but holds {len(buf) if isinstance(buf, bytes) else 'no'} bytes")
        arr = np.frombuffer(buf, dtype=array_dtype).reshape(shape)
        return arr[()] if code == _NPSCALAR else arr

    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=array, raw=False, strict_map_key=False,
                               max_bin_len=size, max_str_len=size, max_array_len=size, max_map_len=size)
    except errors.ZooError:
        raise
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise errors.InvalidModelError(f"cannot read {name}: it is not a Flax msgpack checkpoint "
                                       f"({type(exc).__name__}: {str(exc)[:200]})",
                                       hint="save it with flax.serialization.to_bytes(state) or msgpack_serialize") from None
    if not isinstance(tree, dict):
        raise errors.InvalidModelError(f"cannot read {name}: its top level is a {type(tree).__name__}, not a tree of arrays")
    return _unchunk(tree, name)


def _unchunk(tree: Any, name: str) -> Any:
    """Flax splits arrays over 2 GiB into ``{"__msgpack_chunked_array__": True, "chunks": ..., "shape": ...}``."""
    import numpy as np

    if isinstance(tree, dict) and _CHUNKED in tree:
        chunks = tree.get("chunks")
        chunks = [chunks[k] for k in sorted(chunks, key=lambda k: int(k))] if isinstance(chunks, dict) else chunks
        shape = tree.get("shape")
        shape = [shape[k] for k in sorted(shape, key=lambda k: int(k))] if isinstance(shape, dict) else shape
        if (not isinstance(chunks, list) or not all(isinstance(c, np.ndarray) and c.ndim == 1 for c in chunks)
                or not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or len({c.dtype for c in chunks}) > 1 or sum(c.size for c in chunks) != math.prod(shape)):
            raise errors.UnsafeModelError(f"refusing {name}: a chunked array's chunks do not make its shape")
        return np.concatenate(chunks).reshape(shape)
    if isinstance(tree, dict):
        return {str(k): _unchunk(v, name) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unchunk(v, name) for v in tree]
    return tree


def check_orbax_tree(root: Path, max_bytes: int) -> None:
    """An orbax checkpoint directory, checked before orbax opens it: plain files only (no links, nothing
    resolving outside), under ``max_bytes`` in all, and no tree key in ``_METADATA`` that could name a path
    (orbax's per-array directories are named by the keys)."""
    real = root.resolve()
    total = 0
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            raise errors.UnsafeModelError(f"refusing the orbax checkpoint {root.name}: {rel} is a symbolic link",
                                          hint="copy the checkpoint's real files")
        if not p.resolve().is_relative_to(real):
            raise errors.UnsafeModelError(f"refusing the orbax checkpoint {root.name}: {rel} resolves outside it")
        if p.is_file():
            total += p.stat().st_size
        elif not p.is_dir():
            raise errors.UnsafeModelError(f"refusing the orbax checkpoint {root.name}: {rel} is not a regular file")
    if total > max_bytes:
        raise errors.UnsafeModelError(f"refusing the orbax checkpoint {root.name}: {total} bytes is over the limit "
                                      f"of {max_bytes} (ZOO_FLAX_MAX_BYTES)")
    meta_file = root / "_METADATA"
    if not meta_file.is_file():
        raise errors.InvalidModelError(f"{root.name} is not an orbax PyTree checkpoint (no _METADATA)",
                                       hint="save with orbax.checkpoint.StandardCheckpointer().save(path, state)")
    meta = _read_json(meta_file, "_METADATA")
    tree = meta.get("tree_metadata") if isinstance(meta, dict) else None
    if not isinstance(tree, dict):
        raise errors.InvalidModelError(f"{root.name}/_METADATA holds no tree_metadata")
    for entry in tree.values():
        keys = entry.get("key_metadata") if isinstance(entry, dict) else None
        for k in keys if isinstance(keys, list) else [None]:
            key = k.get("key") if isinstance(k, dict) else None
            if not isinstance(key, (str, int)) or isinstance(key, str) and (
                    not key or key in (".", "..") or any(c in key for c in "/\\\0")):
                raise errors.UnsafeModelError(f"refusing the orbax checkpoint {root.name}: its tree names the key "
                                              f"{str(key)[:80]!r}, which could name a path outside the checkpoint")


def read_orbax(root: Path, max_bytes: int) -> dict[str, Any]:
    """An orbax PyTree checkpoint's arrays as numpy, read after :func:`check_orbax_tree` (orbax reads JSON
    metadata and tensorstore arrays; nothing is unpickled)."""
    import jax
    import numpy as np

    check_orbax_tree(root, max_bytes)
    import orbax.checkpoint as ocp

    try:
        restored = ocp.StandardCheckpointer().restore(root.resolve())
    except Exception as exc:  # noqa: BLE001 - orbax and tensorstore raise their own types on corrupt input
        raise errors.InvalidModelError(f"cannot read the orbax checkpoint {root.name}: {type(exc).__name__}: "
                                       f"{str(exc)[:300]}", hint="the checkpoint is corrupt or incomplete") from None
    def data(a: Any) -> Any:  # a PRNG key array (NNX RNG state saved whole) as its raw key data
        if hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(a))
        return np.asarray(a)

    return jax.tree_util.tree_map(data, restored)
