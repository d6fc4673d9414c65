"""A directory of safetensors weights without a config.json zoo could import as is: accelerate's
``save_model`` / ``save_state`` or the Trainer's ``save_model`` (``model.safetensors`` or
``model-0000N-of-0000M.safetensors`` plus ``model.safetensors.index.json``); ``--arch`` names the model."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from zoo import errors
from zoo.registry.checkpoints.common import Checkpoint

if TYPE_CHECKING:
    from zoo.settings import Settings


def read(path: Path, settings: Settings) -> Checkpoint:
    from safetensors.torch import load_file

    from zoo.safety import check_safetensors

    index = path / "model.safetensors.index.json"
    info: dict[str, Any] = {}
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            assert isinstance(weight_map, dict)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise errors.InvalidModelError(f"{index.name} is not a safetensors index (no weight_map)",
                                           hint="write it with save_pretrained / accelerate's save_model") from None
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            pure = PurePosixPath(str(shard))
            if pure.is_absolute() or ".." in pure.parts or len(pure.parts) != 1 or not (path / shard).is_file() \
                    or (path / shard).is_symlink():
                raise errors.UnsafeModelError(f"{index.name} names shard {shard!r}, which is not a file in {path.name}",
                                              hint="keep the shards next to the index, as plain files")
        layout = "safetensors-sharded"
    elif (path / "model.safetensors").is_file():
        shards, weight_map, layout = ["model.safetensors"], None, "safetensors"
    else:
        raise errors.InvalidModelError(f"{path} holds no model.safetensors or model.safetensors.index.json",
                                       hint="save with accelerate's save_model or the Trainer's save_model")
    state: dict[str, Any] = {}
    for shard in shards:
        check_safetensors(path / shard, shard)
        part = load_file(str(path / shard))
        if weight_map is not None:
            stray = sorted(k for k in part if weight_map.get(k) != shard)
            if stray:
                raise errors.InvalidModelError(f"{shard} holds tensors its index places elsewhere: {stray[:10]}",
                                               hint="the shards and the index disagree: save the model again")
        state.update(part)
    if weight_map is not None and set(weight_map) != set(state):
        raise errors.InvalidModelError(f"the index names {len(set(weight_map) - set(state))} tensors no shard holds",
                                       hint="a shard is missing or truncated")
    info["shards"] = len(shards)
    for name in ("trainer_state.json",):
        try:
            info["step"] = int(json.loads((path / name).read_text(encoding="utf-8"))["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return Checkpoint(state, layout, path.name, info)
