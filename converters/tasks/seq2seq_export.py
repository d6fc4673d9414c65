"""An encoder-decoder pair (tasks/seq2seq.py) in the formats beside ONNX: both modules of ``seq2seq.wrap`` (the
encoder with each layer's cross-attention keys and values; the decoder with its self-attention cache), each as one
file of the format, the decoder the artifact's primary file and checked elementwise, the pair by the same
generation check as the ONNX pair (seq2seq_check.pair_runner runs each format's files).

- ``pt2``: ``encoder.pt2`` and ``decoder.pt2``, ``torch.export`` programs with the ONNX pair's dynamic axes as named
  dims (batch, sequence, encoder_sequence, and the self-attention past from 0: the first step and every later one
  through one program; ``torch_onnx.dynamic_shapes``), written with zoo's signature (names, axes, and the pair's
  contract as ``zoo.io``, which refuses ``zoo convert`` of one file).
- ``jax`` (``edges/jax_export._pair_to_jax``, with ``parts`` and ``files_of`` from here): ``encoder.jax`` and
  ``decoder.jax``, each program run through torchax and serialised by ``jax.export``
  with the same symbolic axes (the past as ``past_plus_one - 1``: jax's symbols are >= 1); int64 ids and masks are
  int32 there (jax without x64), which the runner casts, refusing values beyond int32.
- ``tf``: one SavedModel (jax2tf of the jax pair, ``edges/jax_tf.py``) with two signatures: ``serving_default``
  (the decoder) and ``encoder``.

The files' names and the signature names are recorded in zoo.json (``conversion.files``; the record's
``io.files``). Static shapes (the ladder's last rung) are refused for a pair: its decoder's cache grows each step.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from zoo import errors

NAMES = {"pt2": ("encoder.pt2", "decoder.pt2"), "jax": ("encoder.jax", "decoder.jax")}


def files_of(fmt: str) -> dict[str, str]:
    encoder, decoder = NAMES[fmt]
    return {"encoder": encoder, "decoder": decoder}


def encoder_model(pair: Any) -> Any:
    """The pair's encoder as a TorchModel (names and axes of the contract's encoder)."""
    from zoo.converters.loaders.torch_models import TorchModel

    enc = pair.contract["encoder"]
    return TorchModel(pair.encoder, list(enc["inputs"]), list(enc["outputs"]), pair.encoder_axes)


def parts(tm: Any, ctx: Any) -> list[tuple[str, Any, tuple]]:
    """(part, TorchModel, example) of the encoder and the decoder; static shapes refused."""
    if ctx.static_shapes:
        raise errors.ConversionError("an encoder-decoder is not exported with static shapes: its decoder's "
                                     "self-attention cache grows at every step", hint="pull it as onnx, pt2 or jax")
    pair = tm.seq2seq
    return [("encoder", encoder_model(pair), tuple(pair.encoder_example)), ("decoder", tm, tuple(ctx.example))]


def program(tm: Any, example: tuple, seq_max: int | None) -> Any:
    """``torch.export`` of one part with its named dynamic dims."""
    import torch

    from zoo.converters.edges.torch_onnx import dynamic_shapes

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(tm.module.eval(), example, dynamic_shapes=dynamic_shapes(tm, seq_max))


def to_pt2(tm: Any, out_dir: Path, ctx: Any) -> Path:
    """``encoder.pt2`` beside ``decoder.pt2`` (the primary file)."""
    import torch

    from zoo.converters.loaders.pt2_archive import save_program

    files = files_of("pt2")
    contract = {**tm.seq2seq.contract, "files": files}
    for part, model, example in parts(tm, ctx):
        try:
            exported = program(model, example, ctx.seq_max)
        except Exception as exc:  # noqa: BLE001
            raise errors.ConversionError(f"torch.export could not export the {part}: {errors.first_line(exc, typed=True)}",
                                         edge="torch->pt2", hint="pull the model as onnx") from exc
        save_program(exported, out_dir / files[part], {"inputs": input_spec(model, example), "outputs": model.output_names,
                                                       "source": "torch", "metadata": {"zoo.io": json.dumps(contract)}})
    ctx.info["torch->pt2"] = {"torch": torch.__version__, "files": files, "dynamic_axes": "batch, sequence, "
                              "encoder_sequence and the self-attention past (from 0) as torch.export dims"}
    return out_dir / files["decoder"]


def input_spec(tm: Any, example: tuple) -> list[dict[str, Any]]:
    """Name, shape (dynamic axes by name) and dtype of each input, for the program's signature file."""
    return [{"name": name, "shape": [tm.dynamic_axes.get(name, {}).get(i, d) for i, d in enumerate(t.shape)],
             "dtype": str(t.dtype).removeprefix("torch.")} for name, t in zip(tm.input_names, example)]
