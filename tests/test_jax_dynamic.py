"""Dynamic axes on the jax route (issue 14): torchax traces a CNN's symbolic batch directly; a transformers model
(whose own Python reads a symbolic shape into ``torch.Size``) is traced through its ``torch.export`` graph, its
sequence bounded by the model's longest as a ``jax.export`` constraint. The artifact's I/O contract is read from the
export: exactly the axes it holds symbolically. Checked against transformers' and torch's own outputs at shapes
no export was traced at; and tflite through jax2tf's SavedModel (the last tflite route) keeps a CNN's dynamic batch."""

from __future__ import annotations

import numpy as np
import pytest
from test_targets import require

SEQ_MAX = 64


def _close(got, ref) -> None:
    ref = np.asarray(ref)
    assert ref.std() > 0
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)


def tiny_bert_encoder():
    """A tiny transformers BERT encoder, its two outputs as a tuple, and feeds with padding that matters."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=SEQ_MAX)
    bert = BertModel(config).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            return out.last_hidden_state, out.pooler_output

    return Encoder().eval()


def _feeds(batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + seq)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0  # padding: the mask must matter
    return {"input_ids": rng.integers(1, 99, (batch, seq)).astype(np.int64), "attention_mask": mask}


def _reference(module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [t.numpy() for t in module(*(torch.from_numpy(v) for v in feeds.values()))]


@pytest.fixture(scope="module")
def bert_jax(tmp_path_factory):
    """The tiny BERT through zoo's torch -> jax edge with its batch and sequence axes (~20 s on 2 busy cores)."""
    require("jax")
    import torch  # noqa: F401 - before zoo's edges, as the pipeline imports it

    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.torch_models import TorchModel
    from zoo.converters.parity.runners import torch_inputs

    module = tiny_bert_encoder()
    names = ["input_ids", "attention_mask"]
    tm = TorchModel(module, names, ["last_hidden_state", "pooler_output"],
                    {n: {0: "batch", 1: "sequence"} for n in names})
    ctx = EdgeContext(opset=18, example=torch_inputs(_feeds(2, 16), names), seq_max=SEQ_MAX)
    root = tmp_path_factory.mktemp("bert-jax")
    path = torch_to_jax(tm, root, ctx)
    return module, path, ctx


def test_transformers_bert_exports_to_jax_with_symbolic_batch_and_sequence(bert_jax):
    import jax

    module, path, ctx = bert_jax
    info = ctx.info["torch->jax"]
    # torchax on the module fails (transformers' mask code reads a symbolic torch.Size); its torch.export graph works
    assert info["traced"].startswith("torch.export (dynamic shapes), then torchax") and "torch.Size" in info["traced"]
    contract = info["io_contract"]
    assert contract["shapes"] == "dynamic" and contract["constraints"] == [f"sequence <= {SEQ_MAX}"]
    assert contract["dynamic_axes"] == {"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}}
    assert [i["shape"] for i in contract["inputs"]] == [["batch", "sequence"]] * 2
    assert not any("static" in d for d in contract["differs"]) and not ctx.notes
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    assert [str(a.shape) for a in exported.in_avals] == ["(batch, sequence)"] * 2
    for batch, seq in ((1, 7), (3, 33), (2, SEQ_MAX)):  # none is the traced (2, 16)
        feeds = _feeds(batch, seq)
        got = exported.call(*feeds.values())
        for g, r in zip(got, _reference(module, feeds), strict=True):
            _close(g, r)
    with pytest.raises(Exception, match="refining shapes|sequence"):  # beyond the position table: the constraint refuses it
        exported.call(*_feeds(1, SEQ_MAX + 1).values())


@pytest.mark.slow  # ~25 s more on 2 busy cores (TensorFlow, jax2tf); the default ViT pull covers the dynamic route
def test_the_bert_jax_export_reaches_tf_with_its_dynamic_axes(bert_jax, tmp_path):
    """jax2tf keeps both symbolic axes and the int64 inputs; the export's constraint still refuses a longer input."""
    import tensorflow as tf

    from zoo.converters.edges.jax_tf import jax_to_tf

    module, path, ctx = bert_jax
    saved = jax_to_tf(path, tmp_path, ctx)
    contract = ctx.info["jax->tf"]["io_contract"]
    assert contract["shapes"] == "dynamic" and contract["constraints"] == [f"sequence <= {SEQ_MAX}"]
    assert contract["dynamic_axes"] == {"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}}
    serve = tf.saved_model.load(str(saved.parent)).signatures["serving_default"]
    feeds = _feeds(3, 21)
    got = serve(**{k: tf.constant(v) for k, v in feeds.items()})
    for name, ref in zip(contract["outputs"], _reference(module, feeds), strict=True):
        _close(got[name].numpy(), ref)
    with pytest.raises(Exception, match="(?i)shape|sequence"):  # the export's constraint holds inside the SavedModel
        serve(**{k: tf.constant(v) for k, v in _feeds(1, SEQ_MAX + 1).items()})


def _cnn():
    import torch

    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.GELU(), torch.nn.Conv2d(8, 8, 3, groups=8),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()


def _cnn_ctx(static: bool = False):
    import torch

    from zoo.converters.graph import EdgeContext
    from zoo.converters.loaders.torch_models import TorchModel

    tm = TorchModel(_cnn(), ["x"], ["logits"], {"x": {0: "batch"}})
    return tm, EdgeContext(opset=18, example=(torch.randn(2, 3, 24, 24),), static_shapes=static)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_cnn_jax_contract_names_exactly_the_axes_the_export_holds(tmp_path, static):
    require("jax")
    from zoo.converters.edges.jax_export import torch_to_jax

    tm, ctx = _cnn_ctx(static)
    torch_to_jax(tm, tmp_path, ctx)
    info = ctx.info["torch->jax"]
    assert info["traced"] == "torchax on the module"  # a CNN needs no torch.export detour
    contract = info["io_contract"]
    if static:
        assert contract["shapes"] == "static" and contract["dynamic_axes"] == {}
        assert contract["inputs"][0]["shape"] == [2, 3, 24, 24] and any("static shapes" in d for d in contract["differs"])
    else:
        assert contract["shapes"] == "dynamic" and contract["dynamic_axes"] == {"x": {0: "batch"}}
        assert contract["inputs"][0]["shape"] == ["batch", 3, 24, 24] and contract["constraints"] == []


def test_tflite_through_jax2tf_keeps_a_cnns_dynamic_batch(tmp_path):
    """The last tflite route's edges (torch -> jax -> tf -> tflite): TFLite lowers the XlaCallModule's StableHLO
    of a CNN and the file takes any batch, checked against torch at batches it was not traced at."""
    require("jax")
    import torch

    from zoo.converters.edges.jax_export import torch_to_jax
    from zoo.converters.edges.jax_tf import jax_to_tf
    from zoo.converters.edges.tf import saved_model_to_tflite
    from zoo.converters.parity.runners import artifact_runner

    tm, ctx = _cnn_ctx()
    for hop in ("jax", "tf", "tflite"):
        (tmp_path / hop).mkdir()
    tflite = saved_model_to_tflite(jax_to_tf(torch_to_jax(tm, tmp_path / "jax", ctx), tmp_path / "tf", ctx),
                                   tmp_path / "tflite", ctx)
    assert "jax2tf" in ctx.info["tf->tflite"]["from"] and ctx.info["tf->tflite"]["ops"] == "TFLITE_BUILTINS"
    run = artifact_runner(tflite, ["x"], ["logits"])
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 24, 24)).astype(np.float32)
        with torch.no_grad():
            ref = tm.module(torch.from_numpy(x)).numpy()
        (got,) = run({"x": x})
        assert np.asarray(got).shape == (batch, 5)
        _close(got, ref)
