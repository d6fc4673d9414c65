"""Edges out of the in-memory PyTorch model: ONNX (torch.onnx) and a
``torch.export`` program file (``.pt2``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.converters.graph import EdgeContext, edge


@edge("torch", "onnx", name="torch.onnx", primary="model.onnx", tools=("torch", "onnx", "onnxscript"), pairs=True)
def torch_to_onnx(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    from zoo.converters.edges.torch_onnx import export_onnx

    if getattr(tm, "seq2seq", None) is not None:
        return _encoder_decoder(tm, out_dir, ctx)
    path = out_dir / "model.onnx"
    info = export_onnx(tm, ctx.example, path, opset=ctx.opset, exporter=ctx.exporter, seq_max=ctx.seq_max,
                       external_data_bytes=ctx.external_data_bytes)
    ctx.info["torch->onnx"] = info
    if info.get("fallback_reason"):
        ctx.notes.append(f"the {info['fallback_reason'].split(':')[0]} exporter failed, used {info['exporter']}: "
                         f"{info['fallback_reason']}")
    return path


def _encoder_decoder(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    """An encoder-decoder (tasks/seq2seq.py): ``encoder.onnx`` beside ``decoder.onnx``, the primary file (the
    pipeline's parity runs the decoder elementwise and the pair through the generation check)."""
    from zoo.converters.edges.torch_onnx import export_onnx
    from zoo.converters.loaders.torch_models import TorchModel

    pair = tm.seq2seq
    files = pair.contract["files"]
    encoder = TorchModel(pair.encoder, list(pair.contract["encoder"]["inputs"]), list(pair.contract["encoder"]["outputs"]),
                         pair.encoder_axes)
    enc_info = export_onnx(encoder, pair.encoder_example, out_dir / files["encoder"], opset=ctx.opset,
                           exporter=ctx.exporter, seq_max=ctx.seq_max)
    info = export_onnx(tm, ctx.example, out_dir / files["decoder"], opset=ctx.opset, exporter=ctx.exporter,
                       seq_max=ctx.seq_max)
    ctx.info["torch->onnx"] = {**info, "files": dict(files), "encoder": enc_info}
    for part, got in (("encoder", enc_info), ("decoder", info)):
        if got.get("fallback_reason"):
            ctx.notes.append(f"{part}: the {got['fallback_reason'].split(':')[0]} exporter failed, used "
                             f"{got['exporter']}: {got['fallback_reason']}")
    return out_dir / files["decoder"]


@edge("torch", "pt2", name="torch.export", primary="model.pt2", tools=("torch",), pairs=True)
def torch_to_pt2(tm: Any, out_dir: Path, ctx: EdgeContext) -> Path:
    import torch

    from zoo.converters.edges.torch_onnx import dynamic_shapes
    from zoo.converters.loaders.pt2_archive import save_program

    if getattr(tm, "seq2seq", None) is not None:  # an encoder-decoder: encoder.pt2 beside decoder.pt2
        from zoo.converters.tasks.seq2seq_export import to_pt2

        return to_pt2(tm, out_dir, ctx)
    path = out_dir / "model.pt2"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(tm.module, ctx.example, dynamic_shapes=dynamic_shapes(tm, ctx.seq_max))
            save_program(program, path, {"inputs": _input_spec(tm, ctx.example), "outputs": tm.output_names,
                                         "source": "torch"})
    except Exception as exc:  # noqa: BLE001
        raise errors.ConversionError(f"torch.export could not export the model: {type(exc).__name__}: {str(exc)[:300]}",
                                     hint="models with data-dependent control flow cannot be exported as .pt2") from exc
    ctx.info["torch->pt2"] = {"torch": torch.__version__}
    return path


def _input_spec(tm: Any, example: tuple) -> list[dict[str, Any]]:
    """Name, shape (dynamic axes by name) and dtype of each input, for the program's signature file."""
    return [{"name": name, "shape": [tm.dynamic_axes.get(name, {}).get(i, d) for i, d in enumerate(t.shape)],
             "dtype": str(t.dtype).removeprefix("torch.")} for name, t in zip(tm.input_names, example)]
