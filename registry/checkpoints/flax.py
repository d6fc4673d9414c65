"""Flax checkpoints (``zoo import PATH --name N --arch flax:package.module:Class``).

``PATH`` is a Flax msgpack file (``flax.serialization.to_bytes`` / ``msgpack_serialize``), an orbax PyTree
checkpoint directory (``StandardCheckpointer().save``), or a directory holding one of them, with a
``flax_config.json`` beside it: the constructor's keyword arguments, the input spec and the output names
(data only). The module itself is named by ``--arch`` alone: importing it runs its code, which zoo does only
because the user named it on their own machine, never because a file says so.

The checkpoint is read as data (``zoo.converters.loaders.flax_models``), matched leaf by leaf against a
freshly built module (missing / unexpected names, shape and dtype mismatches: exit 7), and written as a
plain model directory, ``flax_config.json`` (with the module's name) plus ``params.msgpack`` holding exactly
the module's tree, which ``zoo pull local:N`` rebuilds into the ``jax-fn`` node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors

if TYPE_CHECKING:
    from zoo.settings import Settings

ARCH_PREFIX = "flax:"
REFERENCE_FILE = "reference.npz"  # inputs and outputs recorded at training time, checked after import


def locate(path: Path) -> tuple[str, Path, Path]:
    """(format "msgpack" or "orbax", the checkpoint, its flax_config.json) at ``path``."""
    from zoo.converters.loaders.flax_models import CONFIG_FILE, CONFIG_HINT

    if path.is_file():
        if not path.name.endswith(".msgpack"):
            raise errors.UnsupportedError(f"{path.name} is not a Flax checkpoint zoo reads (a .msgpack file or an "
                                          "orbax directory)")
        return "msgpack", path, path.parent / CONFIG_FILE
    if not path.is_dir():
        raise errors.NotFoundError(f"{path} does not exist")
    if (path / "_METADATA").is_file():
        return "orbax", path, path.parent / CONFIG_FILE if not (path / CONFIG_FILE).is_file() else path / CONFIG_FILE
    packs = sorted(p for p in path.glob("*.msgpack") if p.is_file() and not p.is_symlink())
    orbax = sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and (p / "_METADATA").is_file())
    found = [("msgpack", p) for p in packs] + [("orbax", p) for p in orbax]
    if len(found) != 1:
        what = ", ".join(p.name for _, p in found) or "none"
        raise errors.InvalidModelError(f"{path} must hold one Flax checkpoint (a .msgpack file or an orbax directory); "
                                       f"found {what}", hint="import the checkpoint itself: zoo import PATH/TO/CKPT "
                                       f"--arch flax:... with {CONFIG_FILE} beside it; " + CONFIG_HINT)
    kind, ckpt = found[0]
    return kind, ckpt, path / CONFIG_FILE


def prepare(path: Path, dest: Path, settings: Settings, arch: str) -> dict[str, Any]:
    """Read, check and rewrite the Flax checkpoint at ``path`` into ``dest``; the import's provenance."""
    import numpy as np
    from flax.serialization import msgpack_serialize

    from zoo.converters.loaders.flax_models import (
        CONFIG_FILE,
        PARAMS_FILE,
        fill_params,
        flat_tree,
        flax_template,
        module_class,
        module_kind,
        read_config,
        read_msgpack,
        read_orbax,
    )

    spec = arch.removeprefix(ARCH_PREFIX)
    fmt, ckpt, config_path = locate(path)
    config = read_config(config_path)
    cls = module_class(spec)  # the user named it: importing it runs its module's code
    fn, template, ignored = flax_template(cls, config.get("kwargs") or {}, config["inputs"])
    limit = settings.flax_max_bytes
    tree = read_msgpack(ckpt, limit, settings.safetensors_max_tensors) if fmt == "msgpack" else read_orbax(ckpt, limit)
    params = fill_params(template, tree, ckpt.name, ignored)
    reference = check_reference(config_path.parent / REFERENCE_FILE, fn, params, config, limit)
    nested: dict[str, Any] = {}
    for key, leaf in flat_tree(params).items():
        node = nested
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = np.asarray(leaf)
    dest.mkdir(parents=True)
    (dest / PARAMS_FILE).write_bytes(msgpack_serialize(nested))
    recorded = {"module": spec, "kind": module_kind(cls), "kwargs": config.get("kwargs") or {},
                "inputs": config["inputs"], "outputs": list(config.get("outputs") or [])}
    (dest / CONFIG_FILE).write_text(json.dumps(recorded, indent=1, sort_keys=True))
    leaves = flat_tree(params)
    return {"layout": f"flax-{fmt}", "source": ckpt.name, "module": spec, "module_kind": recorded["kind"],
            "parameters": int(sum(np.asarray(v).size for v in leaves.values())), "tensors": len(leaves),
            "checks": "every leaf matched the module's tree by name, shape and dtype"
                      + ("; outputs match the reference recorded at training time" if reference else ""),
            **({"reference": reference} if reference else {})}


def check_reference(path: Path, fn: Any, params: Any, config: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """A reference recorded at training time beside the checkpoint (``reference.npz``: ``inputs/NAME`` for
    every input, ``outputs/0``, ``outputs/1``... or ``outputs/NAME``), run through the rebuilt model with
    ``jax.jit`` and compared; a mismatch is exit 7 (the weights are not the ones that made the reference)."""
    import zipfile

    import jax
    import numpy as np

    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            if sum(i.file_size for i in archive.infolist()) > min(limit, 1 << 30):
                raise errors.UnsafeModelError(f"refusing {path.name}: it unpacks to more than {min(limit, 1 << 30)} bytes")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except errors.ZooError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise errors.InvalidModelError(f"cannot read {path.name}: {str(exc)[:200]}",
                                       hint="save it with numpy.savez(path, **{'inputs/x': x, 'outputs/0': y})") from None
    names = [i["name"] for i in config["inputs"]]
    missing = [n for n in names if f"inputs/{n}" not in arrays]
    outputs = [k for k in arrays if k.startswith("outputs/")]
    if missing or not outputs:
        raise errors.InvalidModelError(f"{path.name} lacks {', '.join(f'inputs/{n}' for n in missing) or 'outputs/...'}",
                                       hint="hold inputs/NAME for every input of flax_config.json, and outputs/0...")
    got = [np.asarray(o) for o in jax.tree_util.tree_leaves(jax.jit(fn)(params, *[arrays[f"inputs/{n}"] for n in names]))]
    order = list(config.get("outputs") or [])
    worst = 0.0
    for key in outputs:
        tail = key.removeprefix("outputs/")
        index = order.index(tail) if tail in order else int(tail) if tail.isdigit() else -1
        want = arrays[key]
        if not 0 <= index < len(got) or got[index].shape != want.shape:
            raise errors.InvalidModelError(f"{path.name}: {key} {list(want.shape)} has no counterpart among the model's "
                                           f"outputs {[list(g.shape) for g in got]}")
        diff = float(np.max(np.abs(got[index].astype("float64") - want.astype("float64")))) if want.size else 0.0
        if not np.allclose(got[index], want, atol=1e-4, rtol=1e-4):
            raise errors.InvalidModelError(
                f"the checkpoint does not reproduce the reference recorded at training time ({key}: max abs diff "
                f"{diff:.3g}, atol 1e-4, rtol 1e-4)",
                hint="the weights, the module or its constructor arguments differ from the run that recorded it")
        worst = max(worst, diff)
    return {"file": path.name, "outputs": len(outputs), "max_abs_diff": worst}
