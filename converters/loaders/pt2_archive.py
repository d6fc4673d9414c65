"""Reading and writing ``.pt2`` files (``torch.export.save`` archives) safely.

``torch.export.load`` is not a safe loader. In torch 2.14 it unpickles with
``weights_only=False`` any weight or constant flagged ``use_pickle``, runs
``pickle.loads`` on "opaque" constants, loads TorchBind objects, falls back to a
full unpickle when the sample inputs do not load weights-only, loads AOTInductor
shared libraries found in the archive, resolves graph targets by walking
attributes from ``torch`` (``torch.os.system`` resolves), and compiles the
program's ``guards_code`` strings into Python. A ``.pt2`` from elsewhere can
therefore run arbitrary code when loaded.

So zoo never hands an archive to ``torch.export.load`` before :func:`check_archive`
has passed it: only the plain layout torch writes for an exported program
(JSON graph, raw little-endian tensor files, weights-only sample inputs), no
pickled payload, no compiled code, no guard code, and graph targets limited to
ATen/prims operators, ``_operator`` and ``math`` functions and torch's symbolic
helpers. On top of that the CLI loads only ``.pt2`` files zoo wrote itself (see
``zoo/convert.py``): this check narrows the attack surface, it is not a proof.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from zoo import errors

SIGNATURE_FILE = "zoo/signature.json"  # extra file: input spec and output names of the program

_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_ALLOWED = re.compile(
    r"^(models/\w+\.json|data/weights/\w+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/\w+_constants_config\.json|data/constants/tensor_\d+|data/sample_inputs/\w+\.pt"
    r"|extra/[\w./-]+)$")
_TARGET = re.compile(r"^(torch\.ops\.(aten|prims)\.\w+\.\w+|_operator\.\w+|math\.\w+|torch\.(_)?sym_\w+)$")
# Guard code is compiled into Python: allow only size comparisons (``L['inputs'][0].size()[1] <= 128``),
# integer arithmetic, a few sympy function names and torch's ``sym_max``/``sym_min`` (a convolution stack's output
# length: ``torch.sym_max(1, (-1) + (L['args'][0].size()[1] // 10))`` in Wav2Vec2's); no other names,
# attributes, strings or calls.
_GUARD = re.compile(r"(?:\s+|L(?:\['\w+'\]|\[\d+\])+\.size\(\)\[\d+\]|\d+|<=|>=|==|!=|<|>|//|[-+*%(),]"
                    r"|\btorch\.sym_(?:max|min)\b|\b(?:and|or|not|Mod|Max|Min|Eq|Ne|FloorDiv)\b)*")


def _unsafe(path: Path, what: str) -> errors.UnsafeModelError:
    return errors.UnsafeModelError(
        f"{path.name}: {what}; zoo refuses it because torch.export.load would unpickle or run code from it",
        hint="re-export the model from its source with torch.export.save, or convert its ONNX file instead")


def _entries(path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    """Archive entry -> its name below the archive's single root directory."""
    names = archive.namelist()
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        raise errors.InvalidModelError(f"{path.name} is not a torch.export archive (expected one root directory)")
    root = roots.pop()
    out = {}
    for name in names:
        rel = name.split("/", 1)[1]
        if not rel or rel.endswith("/"):
            continue
        if ".." in rel.split("/") or rel.startswith("/"):
            raise _unsafe(path, f"entry {name!r} escapes the archive")
        out[rel] = name
    if not out.keys() & {"archive_format"} or archive.read(f"{root}/archive_format").decode(errors="replace") != "pt2":
        raise errors.InvalidModelError(f"{path.name} is not a torch.export .pt2 archive (no archive_format 'pt2')",
                                       hint="older torch.export files (before torch 2.7) are not supported; save it again")
    return out


def check_archive(path: Path) -> dict[str, Any]:
    """Refuse anything in a ``.pt2`` beyond what a plain exported program holds; return its extra files."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise errors.InvalidModelError(f"{path.name} is not a .pt2 archive: {exc}") from exc
    with archive:
        entries = _entries(path, archive)
        for rel in entries:
            if rel not in _FIXED and not _ALLOWED.match(rel):
                raise _unsafe(path, f"it holds {rel!r} (compiled code, pickled objects or an unknown payload)")
        models = [rel for rel in entries if rel.startswith("models/")]
        if not models:
            raise errors.InvalidModelError(f"{path.name} holds no exported program")
        for rel in entries:
            if rel.endswith("_config.json"):
                _check_payload_config(path, rel, json.loads(archive.read(entries[rel])))
            elif rel.startswith("data/sample_inputs/"):
                _check_sample_inputs(path, archive.read(entries[rel]))
        for rel in models:
            _check_program(path, json.loads(archive.read(entries[rel])))
        return {rel[len("extra/"):]: archive.read(name).decode() for rel, name in entries.items() if rel.startswith("extra/")}


def _check_payload_config(path: Path, rel: str, config: dict[str, Any]) -> None:
    for fqn, meta in (config.get("config") or {}).items():
        if meta.get("use_pickle") or not re.match(r"^(weight|tensor)_\d+$", str(meta.get("path_name", ""))):
            raise _unsafe(path, f"{rel} stores {fqn!r} as a pickled object")


def _check_sample_inputs(path: Path, data: bytes) -> None:
    """torch.export.load tries weights_only first and falls back to a full unpickle: make sure it never falls back."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's notes on pickle protocols
            torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler refuses with UnpicklingError and others
        raise _unsafe(path, f"its sample inputs need a full unpickle ({type(exc).__name__})") from exc


def _check_program(path: Path, program: dict[str, Any]) -> None:
    for guard in program.get("guards_code") or []:
        if not _GUARD.fullmatch(str(guard)):
            raise _unsafe(path, f"it carries guard code beyond size checks ({str(guard)[:80]!r}), which torch compiles into Python")
    for target in _targets(program.get("graph_module", {}).get("graph", {})):
        if not _TARGET.match(target):
            raise _unsafe(path, f"its graph calls {target!r}, which is not an ATen/prims operator")


def _targets(graph: dict[str, Any]) -> list[str]:
    found = [str(n.get("target", "")) for n in graph.get("nodes", [])]
    for node in graph.get("nodes", []):  # nested graphs (higher-order ops) carry their own nodes
        for arg in node.get("inputs", []):
            sub = (arg.get("arg") or {}).get("as_graph")
            if sub:
                found += _targets(sub.get("graph", {}))
    return found


def load_program(path: Path) -> tuple[Any, dict[str, Any] | None]:
    """The exported program and zoo's signature (None for archives zoo did not write), after :func:`check_archive`."""
    import warnings

    import torch

    extra = check_archive(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise errors.InvalidModelError(f"cannot load {path.name} as a torch.export program: {str(exc)[:300]}",
                                       hint="it may come from another torch version; export it again") from exc
    signature = json.loads(extra[SIGNATURE_FILE]) if SIGNATURE_FILE in extra else None
    return program, signature


def save_program(program: Any, path: Path, signature: dict[str, Any]) -> None:
    """``torch.export.save`` with zoo's signature (input spec, output names) as an extra file."""
    import torch

    torch.export.save(program, str(path), extra_files={SIGNATURE_FILE: json.dumps(signature)})


_DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.float64": "float64",
                "torch.int32": "int32", "torch.int64": "int64", "torch.bool": "bool"}


def program_signature(program: Any, signature: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Input spec (name, shape with symbolic dims as names, dtype) and output names of a loaded program."""
    if signature and signature.get("inputs"):
        return signature["inputs"], list(signature.get("outputs") or [])
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    spec = []
    for name in program.graph_signature.user_inputs:
        val = placeholders[name].meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise errors.UnsupportedError(f"input {name!r} of the program is not a tensor; zoo feeds tensors only")
        dtype = _DTYPE_NAMES.get(str(val.dtype))
        if dtype is None:
            raise errors.UnsupportedError(f"input {name!r} has dtype {val.dtype}, which zoo cannot feed")
        spec.append({"name": name, "shape": [d if isinstance(d, int) else str(d) for d in val.shape], "dtype": dtype})
    return spec, [str(o) for o in program.graph_signature.user_outputs]


def pt2_signature(path: Path) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """Input spec, output names and the zoo metadata carried over from its source, as ``onnx_signature`` gives."""
    program, signature = load_program(path)
    spec, outputs = program_signature(program, signature)
    return spec, outputs, dict((signature or {}).get("metadata") or {})
