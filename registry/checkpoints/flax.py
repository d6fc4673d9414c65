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
    from zoo.registry.checkpoints.reference import REFERENCE_FILE

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
    """The reference recorded at training time beside ``flax_config.json``, run through the rebuilt model with
    ``jax.jit`` and compared (``checkpoints.reference``: one check for every layout); None when there is none."""
    from zoo.converters.loaders.flax_models import JaxFunction, jit_runner
    from zoo.registry.checkpoints import reference

    if not path.is_file():
        return None
    outputs = list(config.get("outputs") or [])
    jf = JaxFunction(fn, params, config["inputs"], outputs)
    return reference.check(path, jit_runner(jf), jf.input_names, outputs, limit)
