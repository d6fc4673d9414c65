"""Checks on untrusted model files, made before any framework reads them.

Model files are programs in disguise: a pickle runs whatever its opcodes name,
a TorchScript archive carries code, a Keras Lambda layer carries Python
bytecode, ONNX external data can point anywhere on disk. Every check here reads
bytes and JSON only (no torch, no TensorFlow), so a hostile file is refused
before any loader sees it; the loaders then run in their safe modes as a second
layer (``torch.load(weights_only=True)``, ``keras.saving.load_model(safe_mode=True)``).
See docs/security.md for what is refused where.
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import math
import os
import pickletools
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from zoo import errors

SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit (zoo's caps are in Settings)
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_PICKLE_MAX = 256 << 20  # a state dict's pickle holds names and shapes; tensor bytes live beside it
_PICKLE_HINT = "publish safetensors weights; zoo loads pickles only when they hold nothing but tensors"

# The globals a pickled state dict names; a pickle naming anything else is refused
# before torch.load(weights_only=True) (the second layer) ever sees it.
_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"), ("torch", "device"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}  # fmt: skip
_TORCH_DTYPES = re.compile(r"^(float|bfloat|int|uint|complex)\d+$|^bool$|^(half|double|long|short|cfloat)$")
_TORCH_STORAGE = re.compile(r"^[A-Za-z0-9]*Storage$")


# --- safetensors ---------------------------------------------------------------
def check_safetensors(path: Path, name: str | None = None) -> None:
    """The header must be sane JSON whose tensors tile the data exactly, within the file. Its size and
    entry count are capped (``ZOO_SAFETENSORS_MAX_HEADER_BYTES``, ``ZOO_SAFETENSORS_MAX_TENSORS``) before
    the JSON is parsed, so a flood of tiny tensors costs no more than reading its bytes."""
    from zoo.settings import get_settings

    settings = get_settings()
    max_header = min(settings.safetensors_max_header_bytes, SAFETENSORS_MAX_HEADER)
    max_tensors = settings.safetensors_max_tensors
    name = name or path.name
    size = path.stat().st_size

    def bad(why: str) -> errors.UnsafeModelError:
        return errors.UnsafeModelError(f"refusing {name}: not a valid safetensors file ({why})",
                                       hint="the file is corrupt or disguised; fetch it again from a trusted source")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad("shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        # A pickle starts with 0x80, a zip (torch.save) with "PK"; a real header length can too (0x...80 and
        # 0x...4B50 are valid lengths), so that is only the explanation of a header that does not parse.
        disguised = "it is a Python pickle / zip archive named .safetensors, which zoo never unpickles"
        looks_disguised = head[:2] == b"PK" or head[:1] == b"\x80"
        if n > max_header or 8 + n > size:
            raise bad(disguised if looks_disguised else
                      f"header length {n} exceeds the file ({size} bytes) or the {max_header}-byte limit "
                      "(ZOO_SAFETENSORS_MAX_HEADER_BYTES)")
        raw = f.read(n)
    # Every JSON object opens with "{": counting them bounds the entries before the parser builds them.
    if raw.count(b"{") > max_tensors + 2:  # the header itself and __metadata__ are objects too
        raise bad(f"the header holds more than {max_tensors} entries (ZOO_SAFETENSORS_MAX_TENSORS)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(disguised if looks_disguised else f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("__metadata__ must map strings to strings")
    spans = []
    for tensor, info in header.items():
        spans.append(_tensor_span(tensor, info, bad))
    data_len = size - 8 - n
    end = 0
    for begin, stop, tensor in sorted(spans):
        if begin != end:
            raise bad(f"tensor {tensor!r} starts at {begin}, expected {end} (overlap or hole)")
        end = stop
    if end != data_len:
        raise bad(f"the tensors cover {end} bytes but the file holds {data_len} after the header")


def _tensor_span(tensor: str, info: Any, bad: Any) -> tuple[int, int, str]:
    if not isinstance(info, dict):
        raise bad(f"entry {tensor!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise bad(f"tensor {tensor!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"tensor {tensor!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise bad(f"tensor {tensor!r} has invalid data_offsets {offsets!r}")
    begin, stop = offsets
    expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
    if stop - begin != expected:
        raise bad(f"tensor {tensor!r}: {dtype}{shape} needs {expected} bytes, its offsets span {stop - begin}")
    return begin, stop, tensor


# --- pickles and TorchScript ----------------------------------------------------
def check_pickle_weights(path: Path, name: str | None = None, *, allow: frozenset[tuple[str, str]] = frozenset()) -> None:
    """A pickle (plain or torch's zip format) may name only tensor-rebuilding globals (plus ``allow``: a
    checkpoint reader's own inert stand-ins); TorchScript archives (code, not weights) are refused outright."""
    name = name or path.name
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(b"PK"):
        _check_torch_zip(path, name, allow)
    elif magic[:1] == b"\x80":
        with open(path, "rb") as f:
            _check_pickle_stream(f, name, legacy=True, allow=allow)
    else:
        raise errors.InvalidModelError(f"{name} is neither a torch.save zip nor a pickle",
                                       hint="the file is corrupt or not a weights file; fetch it again")


def check_pickle_bytes(data: bytes, name: str, *, allow: frozenset[tuple[str, str]] = frozenset()) -> None:
    """``check_pickle_weights`` for a pickle held in memory (one item of a larger file)."""
    if data[:2] == b"PK":
        _check_torch_zip(io.BytesIO(data), name, allow)
    elif data[:1] == b"\x80":
        _check_pickle_stream(io.BytesIO(data), name, legacy=True, allow=allow)
    else:
        raise errors.InvalidModelError(f"{name} is neither a torch.save zip nor a pickle",
                                       hint="the file is corrupt or not a weights file")


def check_pickle_archive(stream: Any, name: str, *, allow: frozenset[tuple[str, str]] = frozenset()) -> None:
    """``check_pickle_weights`` for a torch.save zip read through a seekable binary file object (one item of
    a larger file): only its directory and its pickles are read, never its storages."""
    _check_torch_zip(stream, name, allow)


def _check_torch_zip(path: Any, name: str, allow: frozenset[tuple[str, str]] = frozenset()) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if any(m.endswith("constants.pkl") or "/code/" in m for m in members):
                raise errors.UnsafeModelError(
                    f"refusing {name}: it is a TorchScript archive (a program, not weights) from an untrusted source",
                    hint="publish the weights as safetensors (or a torch.save state_dict)")
            pickles = [m for m in members if m.endswith(".pkl")]
            if not pickles:
                raise errors.InvalidModelError(f"{name} is a zip archive without a torch pickle",
                                               hint="the file is corrupt or not a weights file")
            for member in pickles:
                if archive.getinfo(member).file_size > _PICKLE_MAX:
                    raise errors.UnsafeModelError(f"refusing {name}: its pickle {member} claims "
                                                  f"{archive.getinfo(member).file_size} bytes", hint=_PICKLE_HINT)
                with archive.open(member) as stream:
                    _check_pickle_stream(io.BytesIO(stream.read(_PICKLE_MAX + 1)), name, legacy=False, allow=allow)
    except zipfile.BadZipFile as exc:
        raise errors.InvalidModelError(f"{name} is a damaged zip archive: {exc}", hint="fetch the file again") from None


def _check_pickle_stream(stream: Any, name: str, *, legacy: bool, allow: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Walk the pickle opcodes (never executing them). torch's legacy format is
    several pickles in a row (magic, protocol, sys info, object, storage keys)
    followed by raw storage bytes, where the walk stops."""
    for index in range(5 if legacy else 1):
        try:
            for module, attr in _pickle_globals(stream):
                if (module, attr) in _PICKLE_ALLOWED or (module, attr) in allow or (module == "torch" and (_TORCH_STORAGE.match(attr) or _TORCH_DTYPES.match(attr))):
                    continue
                what = f"{module}.{attr}" if module else attr
                raise errors.UnsafeModelError(
                    f"refusing {name}: its pickle would call {what}, which plain weights never do (a pickle can run any code)",
                    hint=_PICKLE_HINT)
        except errors.ZooError:
            raise
        except ValueError as exc:  # pickletools: not (or no more) a pickle here
            if index == 0:
                raise errors.InvalidModelError(f"{name} is not a readable pickle: {exc}",
                                               hint="the file is corrupt or not a weights file") from None
            return


def _pickle_globals(stream: Any) -> Iterator[tuple[str, str]]:
    """(module, name) of every global a pickle references, without unpickling it.
    A global whose name cannot be read statically is reported as unknown."""
    stack: list[Any] = []  # only what STACK_GLOBAL may consume: strings or None
    memo: dict[Any, Any] = {}
    for op, arg, _pos in pickletools.genops(stream):
        kind = op.name
        if kind in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            yield _compat_pickle.IMPORT_MAPPING.get(module, module), attr  # protocol 2 names __builtin__
            stack.append(None)
        elif kind == "STACK_GLOBAL":
            attr, module = (stack.pop() if stack else None), (stack.pop() if stack else None)
            if not isinstance(module, str) or not isinstance(attr, str):
                yield "", "a global whose name is computed at load time"
            else:
                yield module, attr
            stack.append(None)
        elif kind in ("EXT1", "EXT2", "EXT4"):
            yield "", f"copyreg extension {arg}"
        elif kind in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"):
            stack.append(arg)
        elif kind in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1] if stack else None
        elif kind == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif kind in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(arg))
        elif kind == "STOP":
            return
        else:
            stack.append(None)


def pickle_globals(stream: Any) -> Iterator[tuple[str, str]]:
    """The (module, name) of every global a pickle stream references, read from its opcodes only."""
    return _pickle_globals(stream)


# --- dispatch by content -----------------------------------------------------
def check_weights_file(path: Path, name: str | None = None) -> str:
    """Check one weights file by its content and name; return "safetensors" or "pickle"."""
    name = name or path.name
    if name.endswith(".safetensors"):
        check_safetensors(path, name)
        return "safetensors"
    if name.endswith(PICKLE_SUFFIXES):
        check_pickle_weights(path, name)
        return "pickle"
    raise errors.UnsupportedError(f"{name}: zoo loads weights from .safetensors, or tensor-only pickles "
                                  f"({', '.join(PICKLE_SUFFIXES)})")


def check_weights(root: Path, weights: list[str]) -> None:
    """Every weights file of a model; an index file may name only those checked shards."""
    shards = {name for name in weights if not name.endswith(".index.json")}
    for name in weights:
        if name.endswith(".index.json"):
            check_weight_index(root / name, name, shards)
        else:
            check_weights_file(root / name, name)


_INDEX_MAX = 64 << 20  # a weight map names every tensor once: megabytes, not more


def check_weight_index(path: Path, name: str, shards: set[str]) -> None:
    """``*.index.json``'s ``weight_map`` is what transformers opens: every entry must name one of the
    model's own shards (the files zoo checked), as a plain file name beside the index."""
    def bad(why: str) -> errors.UnsafeModelError:
        return errors.UnsafeModelError(f"refusing {name}: {why}", hint="an index names only the shards beside it")

    if path.stat().st_size > _INDEX_MAX:
        raise bad(f"it is larger than {_INDEX_MAX} bytes")
    try:
        index = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"it is not JSON ({exc})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise bad("it has no weight_map object")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or shard not in shards:
            shown = repr(shard)[:120]
            outside = isinstance(shard, str) and ("/" in shard or "\\" in shard)
            where = "a path outside the model's files" if outside else "a file that is not one of its shards"
            raise bad(f"weight_map sends tensor {tensor[:120]!r} to {shown}: {where}")


# timm.create_model keyword arguments that name files or fetch weights: never from a repo's config.
_TIMM_FILE_ARGS = frozenset({"checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir",
                             "pretrained_strict", "features_only", "scriptable", "exportable", "no_jit"})


def check_timm_model_args(model_args: Any, where: str) -> None:
    """A timm config's ``model_args`` reach ``timm.create_model(**model_args)``: refuse the ones that
    name files (``checkpoint_path``, ``pretrained_cfg_overlay={"file": ...}``), fetch weights or switch
    timm's code paths, and any key that is not a plain identifier."""
    if model_args is None:
        return
    if not isinstance(model_args, dict):
        raise errors.UnsafeModelError(f"refusing {where}: model_args must be a JSON object")
    for key in model_args:
        if (not isinstance(key, str) or not key.isidentifier() or key in _TIMM_FILE_ARGS
                or key.endswith(("_path", "_file", "_dir"))):
            raise errors.UnsafeModelError(
                f"refusing {where}: model_args sets {str(key)[:80]!r}, which would make timm read files or fetch weights",
                hint="model_args may set architecture options only (depth, widths, drop rates...)")


def check_model_file(path: Path) -> None:
    """Refuse a hostile model file handed over directly (``zoo convert FILE``, ``zoo parity``),
    whatever its kind, before any loader sees it."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        check_onnx_external_data(path)
    elif suffix in (".keras", ".h5", ".hdf5"):
        check_keras_file(path)
    elif suffix == ".safetensors" or suffix in PICKLE_SUFFIXES:
        try:
            check_weights_file(path)
        except errors.UnsafeModelError:
            raise
        except errors.InvalidModelError:
            pass  # junk, not a threat: the caller says what it can convert


def refuse_unsafe_pickle_env() -> None:
    from zoo.settings import unsafe_torch_override

    name = unsafe_torch_override()
    if name:
        raise errors.UnsafeModelError(
            f"{name} is set, which would let a pickle run code when PyTorch loads it; zoo refuses to load pickle weights",
            hint=f"unset {name}: zoo loads pickles only with torch.load(weights_only=True)")


# --- remote code -------------------------------------------------------------
REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def check_remote_code(root: Path, files: list[str], model_id: str) -> None:
    """A repo whose configs name its own Python classes (``auto_map``) needs remote code."""
    for name in REMOTE_CODE_FILES:
        path = root / name
        if name not in files or not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # reported by the reader that needs the file
        if isinstance(config, dict) and (config.get("auto_map") or config.get("custom_pipelines")):
            raise errors.UnsafeModelError(
                f"{model_id} needs custom code from the repo (auto_map in {name}); zoo never runs remote code",
                hint="use a model whose architecture ships with transformers or timm", model=model_id)


# --- Keras -------------------------------------------------------------------
def check_keras_file(path: Path) -> None:
    """A ``.keras`` or legacy ``.h5`` model may use only Keras' own classes: no
    Lambda layers (marshalled Python bytecode), no lambdas, no modules outside keras."""
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > 64 << 20:
                    raise errors.UnsafeModelError(f"refusing {path.name}: its config.json is {info.file_size} bytes")
                config = json.loads(archive.read(info))
        except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.InvalidModelError(f"{path.name} is not a valid .keras file: {exc}") from None
    elif suffix in (".h5", ".hdf5"):
        config = _h5_model_config(path)
        if config is None:
            return  # weights only: keras reads arrays, no classes
    else:
        raise errors.UnsupportedFormatError(f"{path.name} is not a .keras or .h5 Keras file")
    check_keras_config(config, path.name)


def check_keras_config(config: Any, name: str) -> None:
    """A Keras model config (from a ``.keras`` zip, an ``.h5`` attribute, or the ``config.json`` of
    the Hugging Face directory layout) may name only Keras' own classes: no Lambda layers, no
    lambdas, no modules outside keras, no custom registered objects."""
    for where, why in _keras_config_problems(config):
        raise errors.UnsafeModelError(f"refusing {name}: {where} {why}; zoo loads Keras files only with safe_mode",
                                      hint="rebuild the model without Lambda layers or custom objects")


def _h5_model_config(path: Path) -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise errors.MissingDependencyError("h5py is needed to inspect .h5 Keras files",
                                            hint="pip install 'zoo-hub[tf]'") from exc
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise errors.InvalidModelError(f"{path.name} is not a readable HDF5 file: {exc}") from None
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidModelError(f"{path.name}: model_config is not JSON: {exc}") from None


def _keras_config_problems(node: Any, where: str = "the model") -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for item in node:
            yield from _keras_config_problems(item, where)
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class_name")
    inner = node.get("config") if isinstance(node.get("config"), dict) else {}
    here = f"layer {inner.get('name')!r}" if isinstance(inner.get("name"), str) else where
    if cls in ("Lambda", "__lambda__") or node.get("function_type") == "lambda" or inner.get("function_type") == "lambda":
        yield here, "is a Lambda layer (it carries Python bytecode)"
    module = node.get("module")
    if module is not None and not (isinstance(module, str) and (module == "keras" or module.startswith("keras."))):
        yield here, f"names module {module!r} (outside keras)"
    registered = node.get("registered_name")
    if registered is not None and registered != cls:
        yield here, f"is a custom object {registered!r}"
    for value in node.values():
        yield from _keras_config_problems(value, here)


# --- ONNX external data ------------------------------------------------------
def check_onnx_external_data(path: Path) -> None:
    """External tensor data must be plain files inside the model's directory, and
    every (offset, length) must lie within its file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise errors.InvalidModelError(f"{path.name} is not a readable ONNX model: {str(exc)[:200]}") from None
    root = path.parent.resolve()
    for tensor in onnx_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        _check_external_entry(path, root, tensor.name, entries)


def onnx_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX model, of every kind: initializers, sparse initializers (their values
    and indices), node attributes (``t``, ``tensors``, ``sparse_tensor``, ``sparse_tensors``: a
    ``Constant``'s ``value`` and ``sparse_value``), in every subgraph and in every local function."""
    def sparse(item: Any) -> Iterator[Any]:
        yield item.values
        yield item.indices

    def nodes(node_list: Any) -> Iterator[Any]:
        for node in node_list:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("sparse_tensor"):
                    yield from sparse(attr.sparse_tensor)
                for item in attr.sparse_tensors:
                    yield from sparse(item)
                if attr.HasField("g"):
                    yield from graph(attr.g)
                for sub in attr.graphs:
                    yield from graph(sub)

    def graph(g: Any) -> Iterator[Any]:
        yield from g.initializer
        for item in g.sparse_initializer:
            yield from sparse(item)
        yield from nodes(g.node)

    yield from graph(model.graph)
    for function in model.functions:
        yield from nodes(function.node)


def _check_external_entry(path: Path, root: Path, tensor: str, entries: dict[str, str]) -> None:
    location = entries.get("location", "")

    def bad(why: str) -> errors.UnsafeModelError:
        return errors.UnsafeModelError(f"{path.name}: tensor {tensor!r} external data {location!r} {why}",
                                       hint="keep external data files next to the .onnx file, as plain files")

    pure = PurePosixPath(location.replace("\\", "/"))
    if not location or "\0" in location or pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", location):
        raise bad("points outside the model's directory")
    target = root / pure
    probe = root
    for part in pure.parts:  # no link anywhere along the way
        probe = probe / part
        if probe.is_symlink():
            raise bad("goes through a symbolic link")
    if not target.resolve().is_relative_to(root):
        raise bad("resolves outside the model's directory")
    try:
        st = os.stat(target, follow_symlinks=False)
    except OSError:
        raise bad("does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise bad("is not a regular file")
    if st.st_nlink > 1:
        raise bad("is a hard link (it may be a file outside the directory)")
    try:
        offset = int(entries.get("offset", 0) or 0)
        length = int(entries["length"]) if entries.get("length") else st.st_size - offset
    except ValueError:
        raise bad("has a non-numeric offset or length") from None
    if offset < 0 or length < 0 or offset + length > st.st_size:
        raise bad(f"asks for bytes {offset}..{offset + length} of a {st.st_size}-byte file")
