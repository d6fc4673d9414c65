"""A corpus of third-party-style ONNX models, built here with onnx.helper and seeded weights: the kinds of
file that ship inside public packages and that parity must feed right.

- ``dynamic_spatial``: an FPN-like image model with dynamic height and width (named), total stride 64;
  any side that 64 does not divide breaks its skip connection;
- ``detector``: a YOLO-style head ``[1, 4 + 3, anchors]`` on a static ``[1, 3, 320, 320]`` input (as
  ultralytics exports by default), boxes in pixels beside class scores in [0, 1], exporter metadata
  ``task=detect``, ``imgsz``; fires on strongly coloured patches of photographs;
- ``vad``: a voice-activity model with ``If`` (on the sample rate) and ``Loop``, a ``state`` input whose
  unnamed axis 1 is the batch, and ``sr``; a wrong state batch or sample rate makes it raise;
- ``bytes``: a content-type classifier over 512 bytes (``int32``, a 257-row table) with a hand-written,
  eps-free normalisation over the sequence that is unstable on rows of bytes 0 and 1 only;
- ``paddle_ocr``: PaddlePaddle-style (weights as ``Constant`` nodes, ``p2o.DynamicDimension`` symbols) text
  recogniser: 3x48xW images, CTC probabilities ``[batch, W/4, 20]``; a context summed over the width and
  weighted by the small difference of two weights (3.3, -3.299) that fp16 rounds apart: its error grows with W;
- ``sample_rate``: audio ``[batch, samples]`` framed by ``sample_rate / 100`` (a scalar input);
- ``bert``: a one-layer BERT-like encoder (ids, mask, type ids) for the masked-embedding cases.

``CORPUS`` maps each name to its builder; ``real_feeds(name)`` gives what a user would feed it (the
independent oracle of ``bench/bench_parity_corpus.py``). Everything is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
FLOAT, INT64, INT32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32


def _model(nodes: list, inputs: list, outputs: list, inits: dict[str, np.ndarray] | None = None,
           metadata: dict[str, str] | None = None, constants: bool = False) -> onnx.ModelProto:
    """A model; ``constants``: weights as Constant nodes (PaddlePaddle's exporter style), else initializers."""
    inits = inits or {}
    if constants:
        nodes = [helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k), name=f"const_{k}")
                 for k, v in inits.items()] + nodes
        initializers = []
    else:
        initializers = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="corpus")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def _w(rng: np.random.Generator, *shape: int, scale: float = 0.3) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _c(value: Any, dtype: Any = np.float32) -> np.ndarray:
    return np.asarray(value, dtype=dtype)


# --- the models ----------------------------------------------------------------------------------------------
def dynamic_spatial() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = {"w0": _w(rng, 8, 3, 3, 3), "b0": _w(rng, 8)}
    nodes = [helper.make_node("Conv", ["images", "w0", "b0"], ["f0"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Relu", ["f0"], ["r0"], name="relu0")]
    previous = "r0"
    for i in range(1, 7):  # six stride-2 stages: stride 64 (an FPN's P6)
        inits[f"w{i}"], inits[f"b{i}"] = _w(rng, 8, 8, 3, 3, scale=0.2), _w(rng, 8)
        nodes += [helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"f{i}"], strides=[2, 2], pads=[1, 1, 1, 1],
                                   name=f"down{i}"),
                  helper.make_node("Relu", [f"f{i}"], [f"r{i}"], name=f"relu{i}")]
        previous = f"r{i}"
    inits["scales"] = _c([1, 1, 64, 64])
    inits["wh"], inits["bh"] = _w(rng, 4, 8, 1, 1), _w(rng, 4)
    inits["wc"], inits["bc"] = _w(rng, 10, 8), _w(rng, 10)
    nodes += [helper.make_node("Resize", [previous, "", "scales"], ["up"], mode="nearest", name="up64"),
              helper.make_node("Add", ["up", "r0"], ["skip"], name="skip_add"),  # breaks unless 64 divides H and W
              helper.make_node("Conv", ["skip", "wh", "bh"], ["mask"], name="head"),
              helper.make_node("GlobalAveragePool", [previous], ["pooled"], name="gap"),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "wc", "bc"], ["logits"], transB=1, name="classifier")]
    x = helper.make_tensor_value_info("images", FLOAT, ["batch", 3, "height", "width"])
    outs = [helper.make_tensor_value_info("logits", FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("mask", FLOAT, ["batch", 4, "height", "width"])]
    return _model(nodes, [x], outs, inits)


DETECTOR_SIZE, DETECTOR_STRIDE, CLASSES = 320, 16, 3


def detector(score_gain: float = 1.0) -> onnx.ModelProto:
    """Class k fires on 16x16 patches where colour channel k stands out; boxes around each cell.
    ``score_gain`` != 1: the same model with its score weights changed (a broken conversion)."""
    rng = np.random.default_rng(2)
    s = DETECTOR_STRIDE
    cells = DETECTOR_SIZE // s
    ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
    centers = np.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s]).astype(np.float32)[None]  # [1,2,N]
    contrast = np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], np.float32).reshape(3, 3, 1, 1) * 16.0 * score_gain
    inits = {
        "pool_w": np.full((3, 1, s, s), 1.0 / (s * s), np.float32),
        "score_w": contrast, "score_b": _c([-7.0, -7.0, -6.5]),
        "box_w": _w(rng, 4, 3, 1, 1, scale=0.5), "box_b": _c([0, 0, 0.6, 0.6]),
        "centers": centers, "shape_fields": _c([0, 3, -1], np.int64), "shape_boxes": _c([0, 4, -1], np.int64),
        "cell": _c(float(s)), "half": _c(0.5), "two": _c(2.0), "split22": _c([2, 2], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["images", "pool_w"], ["patch"], strides=[s, s], group=3, name="patch_mean"),
        helper.make_node("Conv", ["patch", "score_w", "score_b"], ["score_logit"], name="score_conv"),
        helper.make_node("Sigmoid", ["score_logit"], ["score_map"], name="score_sigmoid"),
        helper.make_node("Reshape", ["score_map", "shape_fields"], ["scores"], name="scores_flat"),
        helper.make_node("Conv", ["patch", "box_w", "box_b"], ["box_raw"], name="box_conv"),
        helper.make_node("Reshape", ["box_raw", "shape_boxes"], ["box_flat"], name="boxes_flat"),
        helper.make_node("Split", ["box_flat", "split22"], ["offset", "size_raw"], axis=1, name="split_box"),
        helper.make_node("Tanh", ["offset"], ["offset_t"], name="offset_tanh"),
        helper.make_node("Mul", ["offset_t", "cell"], ["offset_px"], name="offset_scale"),
        helper.make_node("Add", ["offset_px", "centers"], ["xy"], name="centre"),
        helper.make_node("Exp", ["size_raw"], ["size_e"], name="size_exp"),
        helper.make_node("Mul", ["size_e", "cell"], ["size_c"], name="size_cell"),
        helper.make_node("Mul", ["size_c", "two"], ["wh"], name="size_px"),
        helper.make_node("Concat", ["xy", "wh", "scores"], ["output0"], axis=1, name="pack"),
    ]
    # static, as ultralytics exports by default (dynamic=False): one image of the trained size
    x = helper.make_tensor_value_info("images", FLOAT, [1, 3, DETECTOR_SIZE, DETECTOR_SIZE])
    y = helper.make_tensor_value_info("output0", FLOAT, [1, 4 + CLASSES, cells * cells])
    meta = {"task": "detect", "imgsz": f"[{DETECTOR_SIZE}, {DETECTOR_SIZE}]", "stride": str(s),
            "names": "{0: 'red', 1: 'green', 2: 'blue'}"}
    return _model(nodes, [x], [y], inits, meta)


def vad() -> onnx.ModelProto:
    """Silero-style: If(sr == 16000) frames of 32 samples, else of sr/500; a Loop of 3 recurrent steps over the
    state ``[2, batch, 16]``; outputs speech probability ``[batch, 1]`` and the new state."""
    rng = np.random.default_rng(3)
    inits = {"k16": _c(16000, np.int64), "k500": _c(500, np.int64), "frame16": _c([32], np.int64),
             "zero": _c([0], np.int64), "minus1": _c([-1], np.int64), "axis1": _c([1], np.int64),
             "w_in": _w(rng, 1, 16), "w_rec": _w(rng, 16, 16, scale=0.2), "w_out": _w(rng, 16, 1),
             "trip": _c(3, np.int64), "cond": _c(True, np.bool_), "idx0": _c(0, np.int64), "idx1": _c(1, np.int64)}
    then_g = helper.make_graph([helper.make_node("Identity", ["frame16"], ["flen_t"])], "then", [],
                               [helper.make_tensor_value_info("flen_t", INT64, [1])])
    else_g = helper.make_graph([helper.make_node("Div", ["sr", "k500"], ["q"]),
                                helper.make_node("Reshape", ["q", "axis1"], ["flen_e"])], "else", [],
                               [helper.make_tensor_value_info("flen_e", INT64, [1])])
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "w_rec"], ["hr"]), helper.make_node("Add", ["hr", "drive"], ["hs"]),
         helper.make_node("Tanh", ["hs"], ["h_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("h_out", FLOAT, None)])
    nodes = [
        helper.make_node("Equal", ["sr", "k16"], ["is16k"], name="rate_check"),
        helper.make_node("If", ["is16k"], ["flen"], then_branch=then_g, else_branch=else_g, name="frame_len"),
        helper.make_node("Concat", ["zero", "minus1", "flen"], ["frame_shape"], axis=0, name="frame_shape"),
        helper.make_node("Reshape", ["input", "frame_shape"], ["frames"], name="framing"),  # samples % frame == 0
        helper.make_node("Mul", ["frames", "frames"], ["power"], name="power"),
        helper.make_node("ReduceMean", ["power", "axis1"], ["energy_f"], keepdims=0, name="energy_frames"),
        helper.make_node("ReduceMean", ["energy_f", "axis1"], ["energy"], keepdims=1, name="energy"),
        helper.make_node("MatMul", ["energy", "w_in"], ["drive"], name="drive"),
        helper.make_node("Gather", ["state", "idx0"], ["h0"], axis=0, name="h0"),
        helper.make_node("Gather", ["state", "idx1"], ["c0"], axis=0, name="c0"),
        helper.make_node("Loop", ["trip", "cond", "h0"], ["h3"], body=body, name="recurrence"),
        helper.make_node("Add", ["h3", "c0"], ["hc"], name="cell_mix"),  # the state's batch must be the input's
        helper.make_node("MatMul", ["hc", "w_out"], ["logit"], name="out_proj"),
        helper.make_node("Sigmoid", ["logit"], ["output"], name="prob"),
        helper.make_node("Unsqueeze", ["h3", "zero"], ["h3u"], name="h_new"),
        helper.make_node("Unsqueeze", ["hc", "zero"], ["hcu"], name="c_new"),
        helper.make_node("Concat", ["h3u", "hcu"], ["stateN"], axis=0, name="state_out"),
    ]
    inputs = [helper.make_tensor_value_info("input", FLOAT, [None, None]),
              helper.make_tensor_value_info("state", FLOAT, [2, None, 16]),
              helper.make_tensor_value_info("sr", INT64, [])]
    outputs = [helper.make_tensor_value_info("output", FLOAT, [None, 1]),
               helper.make_tensor_value_info("stateN", FLOAT, [2, None, 16])]
    return _model(nodes, inputs, outputs, inits)


def bytes_model() -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    table = _w(rng, 257, 16, scale=1.0)
    table[1] = table[0] + 1e-6 * rng.standard_normal(16)  # bytes 0 and 1 embed (almost) alike
    inits = {"table": table, "axis": _c([1], np.int64), "w": _w(rng, 5, 16), "b": _w(rng, 5), "two": _c(2.0)}
    nodes = [
        helper.make_node("Gather", ["table", "bytes"], ["emb"], axis=0, name="embed"),
        helper.make_node("ReduceMean", ["emb", "axis"], ["mu"], keepdims=1, name="ln_mean"),
        helper.make_node("Sub", ["emb", "mu"], ["centred"], name="ln_centre"),
        helper.make_node("Pow", ["centred", "two"], ["sq"], name="ln_square"),
        helper.make_node("ReduceMean", ["sq", "axis"], ["var"], keepdims=1, name="ln_var"),
        # over the sequence, no eps: hand-written as found in the wild; a row of bytes 0 and 1 only has ~0 variance
        helper.make_node("Sqrt", ["var"], ["std"], name="ln_std"),
        helper.make_node("Div", ["centred", "std"], ["normed"], name="ln_div"),
        helper.make_node("ReduceMax", ["normed", "one_axis"], ["pooled"], keepdims=0, name="pool"),
        helper.make_node("Gemm", ["pooled", "w", "b"], ["logits"], transB=1, name="classifier"),
    ]
    inits["one_axis"] = _c([1], np.int64)
    x = helper.make_tensor_value_info("bytes", INT32, ["batch", 512])
    y = helper.make_tensor_value_info("logits", FLOAT, ["batch", 5])
    return _model(nodes, [x], [y], inits)


def paddle_ocr(context_gain: float = 1.0) -> onnx.ModelProto:
    """3x48xW text-line recogniser: conv stride (2,2) then (2,2) -> [B, 8, 12, W/4] -> height pooled ->
    a context sum over the whole width (its fp16 rounding grows with W) -> per-step softmax over 20 classes."""
    rng = np.random.default_rng(5)
    inits = {"w1": _w(rng, 8, 3, 3, 3), "b1": _w(rng, 8), "w2": _w(rng, 8, 8, 3, 3, scale=0.2), "b2": _w(rng, 8),
             "axes_h": _c([2], np.int64), "axes_w": _c([2], np.int64), "perm": _c([0, 2, 1], np.int64),
             "ctx_gain": _c(3.3), "ctx_back": _c(-3.3 + 0.001 * context_gain), "wo": _w(rng, 8, 20, scale=1.5),
             "bo": _w(rng, 20)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("ReduceMean", ["r2", "axes_h"], ["seq"], keepdims=0, name="pool_h"),  # [B, 8, T]
        helper.make_node("ReduceSum", ["seq", "axes_w"], ["ctx"], keepdims=1, name="context"),  # grows with W
        helper.make_node("Mul", ["ctx", "ctx_gain"], ["big"], name="context_up"),
        helper.make_node("Add", ["seq", "big"], ["mixed"], name="context_add"),
        helper.make_node("Mul", ["ctx", "ctx_back"], ["back"], name="context_back"),
        helper.make_node("Add", ["mixed", "back"], ["steps"], name="context_remove"),  # 0.001 * ctx; fp16 weights: 0.002
        helper.make_node("Transpose", ["steps"], ["bt"], perm=[0, 2, 1], name="to_steps"),
        helper.make_node("MatMul", ["bt", "wo"], ["logits"], name="proj"),
        helper.make_node("Add", ["logits", "bo"], ["logits_b"], name="proj_bias"),
        helper.make_node("Softmax", ["logits_b"], ["softmax_0.tmp_0"], axis=-1, name="softmax"),
    ]
    x = helper.make_tensor_value_info("x", FLOAT, ["p2o.DynamicDimension.0", 3, 48, "p2o.DynamicDimension.1"])
    y = helper.make_tensor_value_info("softmax_0.tmp_0", FLOAT, ["p2o.DynamicDimension.0", "p2o.DynamicDimension.2", 20])
    return _model(nodes, [x], [y], inits, constants=True)


def sample_rate() -> onnx.ModelProto:
    rng = np.random.default_rng(6)
    inits = {"k100": _c(100, np.int64), "zero": _c([0], np.int64), "minus1": _c([-1], np.int64),
             "axis": _c([-1], np.int64), "one": _c([1], np.int64), "eps": _c(1e-6), "w": _w(rng, 1, 8)}
    nodes = [
        helper.make_node("Div", ["sample_rate", "k100"], ["hop"], name="hop"),  # 10 ms frames
        helper.make_node("Reshape", ["hop", "one"], ["hop1"], name="hop_1d"),
        helper.make_node("Concat", ["zero", "minus1", "hop1"], ["shape"], axis=0, name="frame_shape"),
        helper.make_node("Reshape", ["audio", "shape"], ["frames"], name="framing"),
        helper.make_node("Mul", ["frames", "frames"], ["power"], name="power"),
        helper.make_node("ReduceMean", ["power", "axis"], ["energy"], keepdims=1, name="energy"),
        helper.make_node("Add", ["energy", "eps"], ["energy_e"], name="floor"),
        helper.make_node("Log", ["energy_e"], ["log_energy"], name="log"),
        helper.make_node("MatMul", ["log_energy", "w"], ["frame_features"], name="features"),
    ]
    inputs = [helper.make_tensor_value_info("audio", FLOAT, ["batch", "samples"]),
              helper.make_tensor_value_info("sample_rate", INT64, [])]
    y = helper.make_tensor_value_info("frame_features", FLOAT, ["batch", "frames", 8])
    return _model(nodes, inputs, [y], inits)


BERT_VOCAB, BERT_HIDDEN = 1000, 32


def bert(ffn_gain: float = 1.0, padding_noise: float = 0.0) -> onnx.ModelProto:
    """One BERT layer: embeddings (word, position, type) + LN, masked single-head attention, FFN, LN.
    ``padding_noise`` > 0 adds a large term at padding positions only (real tokens unchanged);
    ``ffn_gain`` != 1 changes the FFN (every real token moves)."""
    rng = np.random.default_rng(7)
    h = BERT_HIDDEN
    inits = {"word": _w(rng, BERT_VOCAB, h, scale=0.5), "pos": _w(rng, 128, h, scale=0.2), "typ": _w(rng, 2, h, scale=0.2),
             "wq": _w(rng, h, h, scale=0.2), "wk": _w(rng, h, h, scale=0.2), "wv": _w(rng, h, h, scale=0.2),
             "w1": _w(rng, h, 64, scale=0.2) * ffn_gain, "w2": _w(rng, 64, h, scale=0.2), "axis": _c([-1], np.int64),
             "eps": _c(1e-12), "two": _c(2.0), "scale": _c(1.0 / np.sqrt(h)), "one": _c(1.0), "neg": _c(-1e4),
             "ax1": _c([1], np.int64), "zero_i": _c(0, np.int64), "one_i": _c(1, np.int64),
             "pad_dir": (_w(rng, h, scale=1.0) * padding_noise).astype(np.float32)}

    def layer_norm(x: str, out: str) -> list:
        return [helper.make_node("ReduceMean", [x, "axis"], [f"{out}_mu"], keepdims=1),
                helper.make_node("Sub", [x, f"{out}_mu"], [f"{out}_c"]),
                helper.make_node("Pow", [f"{out}_c", "two"], [f"{out}_sq"]),
                helper.make_node("ReduceMean", [f"{out}_sq", "axis"], [f"{out}_var"], keepdims=1),
                helper.make_node("Add", [f"{out}_var", "eps"], [f"{out}_ve"]),
                helper.make_node("Sqrt", [f"{out}_ve"], [f"{out}_sd"]),
                helper.make_node("Div", [f"{out}_c", f"{out}_sd"], [out])]

    nodes = [
        helper.make_node("Gather", ["word", "input_ids"], ["we"], axis=0, name="word_embeddings"),
        helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
        helper.make_node("Gather", ["ids_shape", "one_i"], ["seq_len"], axis=0),
        helper.make_node("Range", ["zero_i", "seq_len", "one_i"], ["positions"]),
        helper.make_node("Gather", ["pos", "positions"], ["pe"], axis=0, name="position_embeddings"),
        helper.make_node("Gather", ["typ", "token_type_ids"], ["te"], axis=0, name="token_type_embeddings"),
        helper.make_node("Add", ["we", "pe"], ["e1"]), helper.make_node("Add", ["e1", "te"], ["e2"]),
        *layer_norm("e2", "x0"),
        helper.make_node("MatMul", ["x0", "wq"], ["q"]), helper.make_node("MatMul", ["x0", "wk"], ["k"]),
        helper.make_node("MatMul", ["x0", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "scale"], ["s1"]),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["pad"]),
        helper.make_node("Mul", ["pad", "neg"], ["bias0"]),
        helper.make_node("Unsqueeze", ["bias0", "ax1"], ["bias"]),
        helper.make_node("Add", ["s1", "bias"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["ctx"]),
        helper.make_node("Add", ["x0", "ctx"], ["r1"]), *layer_norm("r1", "x1"),
        helper.make_node("MatMul", ["x1", "w1"], ["f1"]), helper.make_node("Relu", ["f1"], ["f2"]),
        helper.make_node("MatMul", ["f2", "w2"], ["f3"]),
        helper.make_node("Add", ["x1", "f3"], ["r2"]), *layer_norm("r2", "x2"),
        helper.make_node("Unsqueeze", ["pad", "axis"], ["pad3"]),
        helper.make_node("Mul", ["pad3", "pad_dir"], ["pad_term"]),
        helper.make_node("Add", ["x2", "pad_term"], ["last_hidden_state"], name="output_add"),
    ]
    inputs = [helper.make_tensor_value_info(n, INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    y = helper.make_tensor_value_info("last_hidden_state", FLOAT, ["batch", "sequence", h])
    return _model(nodes, inputs, [y], inits)


CORPUS: dict[str, Callable[[], onnx.ModelProto]] = {
    "dynamic_spatial": dynamic_spatial, "detector": detector, "vad": vad, "bytes": bytes_model,
    "paddle_ocr": paddle_ocr, "sample_rate": sample_rate, "bert": bert,
}


def write(name: str, directory: Path, model: onnx.ModelProto | None = None) -> Path:
    path = directory / f"{name}.onnx"
    onnx.save(model if model is not None else CORPUS[name](), str(path))
    return path


def quantized(src: Path, dst: Path) -> Path:
    """``src`` through zoo's own onnx-int8 edge (onnxruntime's dynamic int8 quantisation, 7-bit weights)."""
    import shutil
    import tempfile

    from zoo.converters.edges.onnx_variants import onnx_to_int8
    from zoo.converters.graph import EdgeContext

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        shutil.move(onnx_to_int8(Path(src), Path(tmp), EdgeContext(opset=17)), dst)
    return dst


# --- what a user feeds each model: the bench's independent oracle -----------------------------------------
def real_feed_sets(name: str) -> list[dict[str, np.ndarray]]:
    """What a user feeds the model, as batches it takes (the static detector: one photograph each)."""
    if name == "detector":
        from zoo.converters.parity.samples import image_array, sample_photos

        return [{"images": image_array([photo], height=DETECTOR_SIZE, width=DETECTOR_SIZE)} for photo in sample_photos(4)]
    return [real_feeds(name)]


def real_feeds(name: str) -> dict[str, np.ndarray]:
    from zoo.converters.parity.samples import image_array, sample_audio, sample_photos

    photos = sample_photos(4)
    if name == "dynamic_spatial":
        return {"images": image_array(photos, height=256, width=320)}  # multiples of 64
    if name == "detector":  # one at a time: the input is [1, 3, 320, 320]
        return {"images": image_array(photos[:1], height=DETECTOR_SIZE, width=DETECTOR_SIZE)}
    if name == "vad":
        return {"input": sample_audio(2, rate=16000, seconds=1.0), "state": np.zeros((2, 2, 16), np.float32),
                "sr": np.array(16000, np.int64)}
    if name == "bytes":
        text = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj " * 20
        rows = [np.frombuffer(text[i:i + 512], np.uint8) for i in (0, 7, 13)]
        return {"bytes": np.stack(rows).astype(np.int32)}
    if name == "paddle_ocr":
        return {"x": image_array(photos[:2], height=48, width=320, low=-1.0, high=1.0)}
    if name == "sample_rate":
        return {"audio": sample_audio(2, rate=16000, seconds=1.0), "sample_rate": np.array(16000, np.int64)}
    if name == "bert":
        rng = np.random.default_rng(11)
        ids = rng.integers(100, BERT_VOCAB, (3, 24))
        mask = (np.arange(24)[None] < np.array([[24], [15], [9]])).astype(np.int64)
        return {"input_ids": (ids * mask).astype(np.int64), "attention_mask": mask,
                "token_type_ids": np.zeros((3, 24), np.int64)}
    raise KeyError(name)
