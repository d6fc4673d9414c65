"""FastAI: a ``learn.export()`` ``.pkl`` is a pickle of the whole ``Learner`` (data pipeline, callbacks,
cloudpickled functions: code). zoo never runs it: it walks the opcodes, refuses outright a pickle that
names anything a learner never holds (``os.system``, ``eval``, ...), and otherwise reads it as an inert
object graph (every class a ``Stub`` that only keeps its pickled state, tensors rebuilt from the archive's
storages) to say what it holds: the architecture, the normalisation, the labels; then it refuses to
convert it and says how to export the weights (``learn.save``) that zoo does convert.

``learn.save('NAME')`` weights (``models/NAME.pth``: ``{"model": state_dict, "opt": ...}`` or a bare state
dict) go through ``single`` with ``--arch fastai:timm:NAME``."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from zoo import errors

# Modules a genuine exported Learner names (fastai's own stack, torch, timm/torchvision bodies, and the
# standard library pieces pickle uses); any other global is a payload.
LEARNER_MODULES = ("fastai", "fastcore", "fasttransform", "plum", "torch", "timm", "torchvision", "PIL", "numpy",
                   "cloudpickle", "collections", "pathlib", "inspect", "typing", "random", "functools", "copyreg",
                   "_codecs", "_operator", "operator", "enum", "__builtin__")
# builtins a learner's pickle uses (types; getattr to reach methods, print as a default logger); never eval & co.
LEARNER_BUILTINS = {"set", "frozenset", "tuple", "list", "dict", "bytes", "bytearray", "float", "int", "long", "complex",
                    "str", "unicode", "bool", "slice", "range", "object", "type", "getattr", "print", "reduce", "property",
                    "staticmethod", "classmethod", "NotImplemented", "Ellipsis", "len", "isinstance", "super"}
EXPORT_HINT = ("in fastai, save the weights instead: learn.save('NAME') (writes models/NAME.pth), then "
               "zoo import models/NAME.pth --arch fastai:timm:ARCH --name N")


def is_export(path: Path) -> bool:
    """A torch zip whose pickle names fastai's Learner (read by the opcode walk, nothing executed)."""
    return bool(_globals(path) & {("fastai.learner", "Learner")})


def _data_pkl(archive: zipfile.ZipFile) -> str | None:
    return next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)


def _globals(path: Path) -> set[tuple[str, str]]:
    from zoo.safety import pickle_globals

    try:
        with zipfile.ZipFile(path) as archive:
            member = _data_pkl(archive)
            if member is None or archive.getinfo(member).file_size > 256 << 20:
                return set()
            return set(pickle_globals(io.BytesIO(archive.read(member))))
    except (zipfile.BadZipFile, OSError, ValueError):
        return set()


def _payload(names: set[tuple[str, str]]) -> list[str]:
    bad = []
    for module, attr in sorted(names):
        top = module.split(".")[0]
        if module == "builtins":
            if attr not in LEARNER_BUILTINS:
                bad.append(f"builtins.{attr}")
        elif not module or top not in LEARNER_MODULES:
            bad.append(f"{module}.{attr}" if module else attr)
    return bad


def read_export(path: Path) -> dict[str, Any]:
    """What a ``learn.export()`` pickle says about itself, read without running it; then refuse."""
    names = _globals(path)
    bad = _payload(names)
    if bad:
        raise errors.UnsafeModelError(f"refusing {path.name}: its pickle would call {', '.join(bad[:5])}, which no "
                                      "fastai Learner holds (a pickle can run any code); nothing was executed",
                                      hint=EXPORT_HINT)
    info = _inspect(path)
    parts = [f"architecture {info.get('architecture') or '?'} ({', '.join(info.get('classes', [])[:4])})"]
    if info.get("labels") is not None:
        parts.append(f"labels {info['labels'][:10]}")
    if info.get("mean") is not None:
        parts.append(f"normalisation mean {info['mean']} std {info['std']}")
    raise errors.UnsafeModelError(
        f"refusing {path.name}: a learn.export() pickle is a whole fastai Learner, code included (cloudpickled "
        f"functions), and zoo never runs it; read without running: {'; '.join(parts)}",
        hint=EXPORT_HINT, fastai_export=info)


# --- the inert read -------------------------------------------------------------------------------
class _Inert:
    """A class a learner's pickle names, standing in for it: keeps args and state, runs nothing."""

    _qual = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a stand-in used as a function: another stand-in
        return _stand_in("call", self._qual)(*args)


_CACHE: dict[tuple[str, str], type] = {}


def _stand_in(module: str, qualname: str) -> type:
    key = (module, qualname)
    if key not in _CACHE:
        _CACHE[key] = type(qualname.rpartition(".")[2] or "Inert", (_Inert,), {"_qual": f"{module}.{qualname}"})
    return _CACHE[key]


def _inspect(path: Path) -> dict[str, Any]:
    import torch

    def rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
        return func(*args)  # a tensor subclass (TensorImage, ...): the plain tensor

    real = {("collections", "OrderedDict"): __import__("collections").OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): rebuild_from_type,
            ("_codecs", "encode"): __import__("codecs").encode,
            ("torch", "Size"): torch.Size, ("torch", "device"): torch.device}
    for t in ("set", "frozenset", "tuple", "list", "dict", "bytes", "float", "int", "str", "bool", "slice"):
        real[("builtins", t)] = __builtins__[t] if isinstance(__builtins__, dict) else getattr(__builtins__, t)

    with zipfile.ZipFile(path) as archive:
        member = _data_pkl(archive)
        prefix = member.rpartition("/")[0]

        class Reader(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if (module, name) in real:
                    return real[(module, name)]
                if module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype)):
                    return getattr(torch, name)
                return _stand_in(module, name)

            def persistent_load(self, pid: Any) -> Any:
                _, storage_type, key, _location, _numel = pid
                data = archive.read(f"{prefix}/data/{key}")
                dtype = storage_type.dtype if hasattr(storage_type, "dtype") else storage_type
                untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
                return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)

        try:
            learner = Reader(io.BytesIO(archive.read(member))).load()
        except Exception as exc:  # noqa: BLE001 - what could not be read is only not reported
            return {"classes": [], "read_error": str(exc)[:200]}
    return _summarise(learner)


def _walk(obj: Any, seen: set[int], depth: int = 0):
    if id(obj) in seen or depth > 60:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, _Inert):
        children: list[Any] = [obj.__dict__.get(k) for k in ("_args", "_state", "_items", "_list")]
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    else:
        return
    for child in children:
        yield from _walk(child, seen, depth + 1)


def _state_of(obj: _Inert) -> dict[str, Any]:
    state = obj.__dict__.get("_state")
    if isinstance(state, tuple) and state and isinstance(state[0], dict):  # (dict state, slot state)
        state = state[0]
    return state if isinstance(state, dict) else {}


def _summarise(learner: Any) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"classes": [], "architecture": None, "labels": None, "mean": None, "std": None}
    classes: list[str] = []
    for obj in _walk(learner, set()):
        if isinstance(obj, _Inert):
            qual = obj._qual
            if qual.startswith(("timm.models.", "torchvision.models.", "fastai.vision.learner.", "fastai.layers.")) \
                    and qual not in classes:
                classes.append(qual)
            state = _state_of(obj)
            if qual.endswith(".CategoryMap"):
                items = state.get("items")
                items = items.__dict__.get("_state", {}).get("items") if isinstance(items, _Inert) else items
                if isinstance(items, list):
                    out["labels"] = [str(i) for i in items][:1000]
            if qual.endswith(".Normalize") and isinstance(state.get("mean"), torch.Tensor):
                out["mean"] = [round(float(v), 6) for v in state["mean"].reshape(-1)]
                out["std"] = [round(float(v), 6) for v in state["std"].reshape(-1)]
        elif isinstance(obj, dict) and isinstance(obj.get("architecture"), str) and out["architecture"] is None:
            out["architecture"] = obj["architecture"]  # a timm body's pretrained_cfg
    out["classes"] = classes
    return out
