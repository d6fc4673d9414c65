"""Outputs recorded at training time beside a checkpoint (``reference.npz``), checked after ``zoo import``.

Where zoo looks (``locate``):

- a checkpoint directory (DeepSpeed ZeRO, FSDP / DCP, sharded safetensors): ``DIR/reference.npz``, in the
  directory given to ``zoo import``;
- a checkpoint file (a Lightning ``.ckpt``, a plain / DDP / Horovod state dict, fastai's ``models/NAME.pth``):
  ``NAME.reference.npz`` beside it (``last.ckpt`` -> ``last.reference.npz``), else ``reference.npz`` beside it;
- a Flax checkpoint: ``reference.npz`` beside its ``flax_config.json`` (``checkpoints.flax``).

What it holds (``numpy.savez``; read with ``allow_pickle=False``, so object arrays are refused):
``inputs/NAME`` for every input of the rebuilt model (a timm model's one input is ``input``; a transformers
model's are ``input_ids``, ``attention_mask``, ``pixel_values``...; a Flax model's are those of
``flax_config.json``), ``outputs/NAME`` or ``outputs/0``, ``outputs/1``... for any of its outputs (a timm
classifier's is ``logits``), and optionally ``precision``, a 0-d string (``"bfloat16"``) naming the precision
the outputs were computed at; by default ``float16`` when an output is float16, else ``float32``.

The rebuilt model runs on the recorded inputs and ``check_parity`` compares its outputs with the recorded
ones at that precision's parity tolerance (``converters.parity.tolerance``). A mismatch is
``ReferenceMismatchError`` (exit 6) and nothing is imported; a reference that does not fit the model (an
input it lacks, an output it does not have) is exit 7. The record's ``extra.checkpoint.reference`` keeps the
figures of the check that ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors

if TYPE_CHECKING:
    from zoo.registry.records import ModelRecord

REFERENCE_FILE = "reference.npz"
SET_NAME = "training-reference"
MAX_BYTES = 1 << 30  # what a reference may unpack to
FORMAT_HINT = ("save it at the end of training with numpy.savez(PATH, **{'inputs/NAME': x, 'outputs/0': y}), "
               "the model in eval mode")


def locate(path: Path) -> Path | None:
    """The reference recorded beside the checkpoint at ``path``, or None."""
    if path.is_dir():
        candidates = [path / REFERENCE_FILE]
    else:
        candidates = [path.with_name(f"{path.name.split('.')[0]}.reference.npz"), path.parent / REFERENCE_FILE]
    return next((c for c in candidates if c.is_file() and not c.is_symlink()), None)


def read(path: Path, limit: int = MAX_BYTES) -> dict[str, Any]:
    """The arrays of ``path`` (an ``.npz``), refusing pickled objects and more than ``limit`` unpacked bytes."""
    import zipfile

    import numpy as np

    limit = min(limit, MAX_BYTES)
    try:
        with zipfile.ZipFile(path) as archive:
            if sum(i.file_size for i in archive.infolist()) > limit:
                raise errors.UnsafeModelError(f"refusing {path.name}: it unpacks to more than {limit} bytes")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except errors.ZooError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise errors.InvalidModelError(f"cannot read {path.name}: {str(exc)[:200]}", hint=FORMAT_HINT) from None


def check(path: Path, run: Callable[[dict[str, Any]], list[Any]], input_names: list[str], output_names: list[str],
          limit: int = MAX_BYTES) -> dict[str, Any]:
    """Run ``run`` (feeds -> the rebuilt model's outputs, in ``output_names`` order) on the recorded inputs
    and compare with the recorded outputs; the figures for the record, or ``ReferenceMismatchError``."""
    from zoo.converters.parity.check import check_parity
    from zoo.converters.parity.report import InputSet

    arrays = read(path, limit)
    feeds, wanted, precision = _split(path.name, arrays, input_names)
    try:
        got = list(run(feeds))
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model raised on the recorded inputs
        raise errors.InvalidModelError(f"the rebuilt model cannot run on the inputs of {path.name}: "
                                       f"{type(exc).__name__}: {str(exc)[:300]}", hint=FORMAT_HINT) from None
    picked = []
    for key in wanted:
        index = output_names.index(key) if key in output_names else int(key) if key.isdigit() else -1
        if not 0 <= index < len(got):
            raise errors.InvalidModelError(f"{path.name}: outputs/{key} names no output of the model (it has "
                                           f"{', '.join(output_names[:len(got)]) or len(got)})", hint=FORMAT_HINT)
        picked.append(got[index])
    report = check_parity(lambda _feeds: list(wanted.values()), lambda _feeds: picked,
                          [InputSet(SET_NAME, feeds, "random")], output_names=list(wanted), tolerance=precision)
    figures = {"file": path.name, "passed": report.passed, "precision": precision,
               "atol": report.tolerance.atol, "rtol": report.tolerance.rtol, "max_abs_diff": report.max_abs_diff,
               "outputs": {k: {"max_abs_diff": o["max_abs_diff"], "atol": o["atol"], "cosine": o["cosine"]}
                           for k, o in report.outputs.items()},
               "inputs": {k: list(v.shape) for k, v in feeds.items()}, "inputs_sha256": report.inputs_sha256}
    if not report.passed:
        raise errors.ReferenceMismatchError(
            f"the checkpoint does not reproduce the reference recorded at training time ({path.name}): "
            f"{report.summary_line()}; nothing was imported",
            hint="the weights, the architecture or its arguments differ from the run that recorded it; if "
                 f"{path.name} was recorded for another checkpoint in that folder, name it "
                 "<checkpoint>.reference.npz beside its own checkpoint", reference=figures)
    return figures


def _split(name: str, arrays: dict[str, Any], input_names: list[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(feeds by input name, recorded outputs by their key's tail, precision) of a reference's arrays."""
    from zoo.converters.parity.tolerance import DEFAULT_TOLERANCES

    missing = [n for n in input_names if f"inputs/{n}" not in arrays]
    extra = [k for k in arrays if k.startswith("inputs/") and k.removeprefix("inputs/") not in input_names]
    wanted = {k.removeprefix("outputs/"): v for k, v in arrays.items() if k.startswith("outputs/")}
    if missing or extra or not wanted:
        what = "; ".join(filter(None, [f"lacks {', '.join(f'inputs/{n}' for n in missing)}" if missing else "",
                                       f"has {', '.join(extra)}, which the model does not take" if extra else "",
                                       "holds no outputs/..." if not wanted else ""]))
        raise errors.InvalidModelError(f"{name} {what}: the model takes {', '.join(input_names)}",
                                       hint=f"hold inputs/NAME for each of them and outputs/0...; {FORMAT_HINT}")
    precision = "float16" if any(str(v.dtype) == "float16" for v in wanted.values()) else "float32"
    if "precision" in arrays:
        precision = str(arrays["precision"])
        if arrays["precision"].ndim != 0 or precision not in DEFAULT_TOLERANCES:
            raise errors.InvalidModelError(f"{name}: precision {precision[:40]!r} is none of "
                                           f"{', '.join(DEFAULT_TOLERANCES)}", hint=FORMAT_HINT)
    return {n: arrays[f"inputs/{n}"] for n in input_names}, wanted, precision


def check_torch(path: Path, record: ModelRecord, root: Path, weights: list[str], weights_format: str) -> dict[str, Any]:
    """The model zoo wrote into ``root`` from a training checkpoint, rebuilt as ``zoo pull`` rebuilds it
    (``loaders.torch_models``), checked against the reference at ``path``."""
    from zoo.converters.loaders.torch_models import build_model
    from zoo.converters.parity.runners import torch_runner

    tm = build_model(record, root, weights, weights_format, lambda _note: None)
    return check(path, torch_runner(tm), list(tm.input_names), list(tm.output_names))
