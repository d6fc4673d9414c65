"""torchscript.lean_shape_inference: the TorchScript exporter's shape inference without the weights' data must give
the exporter's own ONNX file, node for node, on the model families zoo exports (CNN, ViT, BERT, a decoder with its
KV cache), and leave the exporter as it found it."""

from __future__ import annotations

import io

import pytest

from zoo.converters.edges import torchscript


def _timm(name: str):
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    return model, (torch.randn(2, 3, 160, 160),), ["pixel_values"], ["logits"], {"pixel_values": {0: "batch"}}


def _bert():
    import torch
    from test_jax_dynamic import tiny_bert_encoder

    ids = torch.randint(0, 99, (2, 7))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    return tiny_bert_encoder(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["last_hidden_state", "pooler"], axes


def _gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from zoo.converters.tasks.text_generation import io_names, wrap

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()
    inputs, outputs, axes = io_names(2)
    past = [torch.randn(2, 2, 3, 16) for _ in range(4)]
    example = (torch.randint(0, 300, (2, 4)), torch.ones(2, 7, dtype=torch.long), *past)
    return wrap(model, 2), example, inputs, outputs, axes


def _export(built, lean: bool) -> bytes:
    import contextlib

    import onnx
    import torch

    model, example, inputs, outputs, axes = built
    buffer = io.BytesIO()
    with torch.no_grad(), (torchscript.lean_shape_inference() if lean else contextlib.nullcontext()):
        torch.onnx.export(model, example, buffer, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=18, dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    return proto.graph.SerializeToString()


@pytest.mark.parametrize("build", [lambda: _timm("test_resnet"), lambda: _timm("test_vit"), _bert, _gpt2],
                         ids=["resnet", "vit", "bert", "gpt2-with-cache"])
def test_the_lean_export_is_the_exporters_own_file(build):
    import torch

    real = torch._C._jit_pass_onnx_graph_shape_type_inference
    built = build()
    assert _export(built, lean=True) == _export(built, lean=False)
    assert torch._C._jit_pass_onnx_graph_shape_type_inference is real  # restored


def test_the_pass_sees_integers_and_small_tensors_but_not_weights(monkeypatch):
    import torch

    seen: list[dict] = []
    real = torch._C._jit_pass_onnx_graph_shape_type_inference
    monkeypatch.setattr(torch._C, "_jit_pass_onnx_graph_shape_type_inference",
                        lambda graph, params, opset: (seen.append(dict(params)), real(graph, params, opset))[1])
    big, small, index = torch.randn(512, 256), torch.randn(8), torch.arange(70000)
    with torchscript.lean_shape_inference():
        torch._C._jit_pass_onnx_graph_shape_type_inference(torch._C.Graph(), {"w": big, "b": small, "i": index}, 18)
    assert set(seen[0]) == {"b", "i"}
