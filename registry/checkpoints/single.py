"""One checkpoint file: a ``torch.save`` state dict (plain, DDP's ``module.``, torch.compile's ``_orig_mod.``),
a training checkpoint that holds one (PyTorch Lightning's ``.ckpt``, a Horovod / hand-written
``{"model": ..., "optimizer": ..., "epoch": ...}``), or one ``.safetensors`` file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors
from zoo.registry.checkpoints.common import Checkpoint, safe_torch_load, stub, tensors_only

if TYPE_CHECKING:
    from zoo.settings import Settings

# Where hand-written training checkpoints (Horovod's examples, most training scripts) keep the weights.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state")
STEP_KEYS = ("global_step", "step", "iteration", "epoch")
# learn.save() keeps the optimizer state beside the weights, in fastcore's list type: an inert stand-in.
FASTAI_SAVE = {("fastcore.foundation", "L"): stub("fastcore.foundation", "L")}


def read(path: Path, settings: Settings) -> Checkpoint:
    name = path.name
    config, config_dir = _config_beside(path)
    if name.lower().endswith(".safetensors"):
        from safetensors.torch import load_file

        from zoo.safety import check_safetensors

        check_safetensors(path, name)
        return Checkpoint(load_file(str(path)), "safetensors", name, config=config, config_dir=config_dir)
    from zoo.registry.checkpoints import fastai

    if fastai.is_export(path):
        fastai.read_export(path)  # reads what it can without running it, then refuses
    obj = safe_torch_load(path, name, allow=FASTAI_SAVE)
    if not isinstance(obj, dict):
        raise errors.InvalidModelError(f"{name} holds a {type(obj).__name__}, not a state dict or a checkpoint",
                                       hint="save the weights with torch.save(model.state_dict())")
    info: dict[str, Any] = {k: obj[k] for k in STEP_KEYS if isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool)}
    if "pytorch-lightning_version" in obj or ("state_dict" in obj and "hyper_parameters" in obj):
        hparams = obj.get("hyper_parameters")
        info["lightning_version"] = str(obj.get("pytorch-lightning_version", ""))
        return Checkpoint(tensors_only(obj.get("state_dict"), f"{name}['state_dict']"), "lightning", name, info,
                          hparams=hparams if isinstance(hparams, dict) else None, config=config, config_dir=config_dir)
    from torch import Tensor

    if all(isinstance(v, Tensor) for v in obj.values()):
        return Checkpoint(tensors_only(obj, name), "state-dict", name, info, config=config, config_dir=config_dir)
    for key in STATE_KEYS:
        if isinstance(obj.get(key), dict):
            info["state_key"] = key
            return Checkpoint(tensors_only(obj[key], f"{name}[{key!r}]"), "training-checkpoint", name, info,
                              config=config, config_dir=config_dir)
    raise errors.InvalidModelError(f"{name} holds a dict without a state dict ({sorted(map(str, obj))[:10]})",
                                   hint=f"zoo finds the weights under one of {', '.join(STATE_KEYS)}, or a dict of tensors")


def _config_beside(path: Path) -> tuple[dict[str, Any] | None, Path | None]:
    config = path.parent / "config.json"
    if not config.is_file() or config.is_symlink():
        return None, None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, None
    return (data, path.parent) if isinstance(data, dict) else (None, None)
