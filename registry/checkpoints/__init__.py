"""Training checkpoints as import sources (``zoo import PATH --name N [--arch A]``).

One module per layout, each detected by its files and never by unpickling first:

- ``single``: one file: a plain ``torch.save`` state dict, a DDP / ``torch.compile`` / Horovod one
  (``module.`` / ``_orig_mod.`` prefixes), a PyTorch Lightning ``.ckpt`` (``state_dict`` +
  ``hyper_parameters``), or one ``.safetensors`` file;
- ``sharded``: a directory of safetensors shards with an index (accelerate / Trainer ``save_model``);
- ``zero``: a DeepSpeed ZeRO 1/2/3 directory (``latest``, ``global_stepN/*_model_states.pt`` and
  ``*_optim_states.pt``), consolidated to fp32 as ``zero_to_fp32`` does, without deepspeed;
- ``dcp``: a ``torch.distributed.checkpoint`` directory (FSDP): ``.metadata`` plus ``*.distcp`` shards.

Every layout yields a state dict plus what the checkpoint says about itself; ``common`` matches it to
the architecture (from the checkpoint or ``--arch``), refuses missing / unexpected keys and shape
mismatches (exit 7), and writes a plain model directory (config.json + model.safetensors) that
``zoo.registry.local_source`` imports like any other. Every pickle goes through
``zoo.safety``'s opcode walk, then ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoo.settings import Settings

__all__ = ["detect", "prepare"]


def detect(path: Path) -> str | None:
    """The checkpoint layout at ``path`` ("single", "sharded", "zero", "dcp"), or None for a model
    directory / archive that ``zoo import`` reads as before. Looks at names and headers only."""
    from zoo.safety import PICKLE_SUFFIXES

    if path.is_file():
        return "single" if path.name.lower().endswith((*PICKLE_SUFFIXES, ".safetensors")) else None
    if not path.is_dir():
        return None
    if (path / ".metadata").is_file() and any(path.glob("*.distcp")):
        return "dcp"
    if (path / "latest").is_file() or any(p.is_dir() and any(p.glob("*model_states.pt")) for p in path.glob("global_step*")):
        return "zero"
    if any(path.glob("*model_states.pt")):
        return "zero"
    if not (path / "config.json").is_file() and (
            (path / "model.safetensors.index.json").is_file() or (path / "model.safetensors").is_file()):
        return "sharded"
    return None


def prepare(path: Path, dest: Path, settings: Settings, arch: str | None = None, layout: str | None = None) -> dict[str, Any]:
    """Read the checkpoint at ``path``, check it against its architecture, and write it into ``dest``
    as a plain model directory (config.json + model.safetensors); return the record's provenance notes."""
    from zoo.registry.checkpoints.common import prepare as prepare_state

    layout = layout or detect(path)
    if layout == "single":
        from zoo.registry.checkpoints.single import read
    elif layout == "sharded":
        from zoo.registry.checkpoints.sharded import read
    elif layout == "zero":
        from zoo.registry.checkpoints.zero import read
    elif layout == "dcp":
        from zoo.registry.checkpoints.dcp import read
    else:
        from zoo import errors

        raise errors.UnsupportedError(f"{path} is not a checkpoint layout zoo knows",
                                      hint="zoo imports model directories, archives of them, and training checkpoints")
    return prepare_state(read(path, settings), dest, settings, arch)
