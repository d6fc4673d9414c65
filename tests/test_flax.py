"""JAX and Flax sources: a Flax NNX CNN trained a few steps on the CPU (real optax), saved with msgpack and
with orbax, imported by its module's name, pulled to ONNX with jax2onnx and checked against ``jax.jit`` of
the model as it was at the end of training; a Linen model through ``zoo.convert_jax``; hostile checkpoints
refused with nothing half-written. Tests needing jax/flax fail (never skip) when CI=true."""

from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo

from zoo import errors

TESTS = Path(__file__).parent
ARCH = "flax:flax_modules:SmallCNN"
CONFIG = {"kwargs": {"channels": 4}, "inputs": [{"name": "image", "shape": ["batch", 8, 8, 1], "dtype": "float32"}],
          "outputs": ["logits"]}


def _need(module: str):
    """A test dependency: missing on CI is a failure (the extras install it), elsewhere a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def _settings():
    from zoo.settings import get_settings

    return get_settings()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SmallCNN after 3 adam steps; its checkpoint as msgpack and as orbax (each with flax_config.json); a
    fresh input and the trained model's jax.jit outputs on it (the truth the artifacts are checked against)."""
    for m in ("jax", "flax", "optax", "orbax.checkpoint", "jax2onnx"):
        _need(m)
    import jax
    import optax
    import orbax.checkpoint as ocp
    from flax import nnx
    from flax.serialization import msgpack_serialize
    from flax_modules import SmallCNN

    model = SmallCNN(channels=4, rngs=nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        opt.update(model, grads)
        return loss

    model.train()
    losses = [float(step(model, opt, x, y)) for _ in range(3)]
    model.eval()
    assert losses[-1] < losses[0]
    state = nnx.state(model, nnx.Not(nnx.RngState))  # parameters and batch-norm statistics
    root = tmp_path_factory.mktemp("flax")
    (root / "msgpack").mkdir()
    (root / "msgpack" / "model.msgpack").write_bytes(msgpack_serialize(nnx.to_pure_dict(state)))
    (root / "msgpack" / "flax_config.json").write_text(json.dumps(CONFIG))
    (root / "orbax").mkdir()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((root / "orbax" / "ckpt").resolve(), state)
    checkpointer.wait_until_finished()
    (root / "orbax" / "flax_config.json").write_text(json.dumps(CONFIG))
    checkpointer.save((root / "orbax-whole" / "ckpt").resolve(), nnx.state(model))  # RNG state (PRNG keys) too
    checkpointer.wait_until_finished()
    (root / "orbax-whole" / "flax_config.json").write_text(json.dumps(CONFIG))
    fresh = rng.normal(size=(5, 8, 8, 1)).astype("float32")
    expected = np.asarray(jax.jit(lambda m, v: m(v))(model, fresh))
    # a reference recorded at training time, beside the msgpack checkpoint: checked after import
    np.savez(root / "msgpack" / "reference.npz", **{"inputs/image": x[:4], "outputs/logits": np.asarray(model(x[:4]))})
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert not np.allclose(after["head"]["kernel"], before["head"]["kernel"])  # training moved the weights
    return {"root": root, "fresh": fresh, "expected": expected, "state": state}


def _onnx_outputs(path: str, feeds: dict) -> list:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("fmt, checkpoint", [("msgpack", "msgpack"), ("orbax", "orbax/ckpt")])
def test_trained_nnx_checkpoint_imports_and_pulls_to_onnx(trained, fmt, checkpoint):
    import onnx

    from zoo import pipeline
    from zoo.registry.local_source import import_path

    record = import_path(trained["root"] / checkpoint, f"cnn-{fmt}", _settings(), arch=ARCH)
    assert record.library == "flax" and record.arch == "flax_modules:SmallCNN"
    assert record.extra["checkpoint"]["layout"] == f"flax-{fmt}"
    assert record.extra["checkpoint"]["tensors"] == 8  # conv 2, batch norm 4 (scale, bias, mean, var), head 2
    if fmt == "msgpack":
        assert record.extra["checkpoint"]["reference"]["max_abs_diff"] < 1e-5
    result = pipeline.pull(f"local:cnn-{fmt}")
    assert result.verified and result.parity["passed"], result.parity
    assert result.conversion["chain"] == "jax-fn -> onnx" and result.conversion["exporter"] == "jax2onnx"
    # the artifact against the model as it was at the end of training, on an input parity never saw
    (out,) = _onnx_outputs(result.path, {"image": trained["fresh"]})
    np.testing.assert_allclose(out, trained["expected"], atol=1e-5, rtol=1e-5)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert "Dropout" not in ops  # inference-mode dropout is the identity (onnx2tf cannot read jax2onnx's Dropout)
    assert result.conversion["details"]["jax-fn->onnx"]["rewrites"].startswith("1 ")
    again = pipeline.pull(f"local:cnn-{fmt}")
    assert again.cached and again.digest == result.digest


def test_an_orbax_checkpoint_of_the_whole_nnx_state_imports_without_its_rng_state(trained):
    from zoo.registry.local_source import import_path

    record = import_path(trained["root"] / "orbax-whole" / "ckpt", "whole", _settings(), arch=ARCH)
    assert record.extra["checkpoint"]["tensors"] == 8  # the dropout's RNG key and count are not the model's


def test_the_cli_imports_by_module_name_and_refuses_what_is_not_a_module(trained, zoo_env):
    env = {"PYTHONPATH": str(TESTS)}  # the user's package, importable on their machine
    proc = run_zoo("import", str(trained["root"] / "msgpack"), "--name", "cnn", "--arch", ARCH, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "flax flax_modules:SmallCNN" in proc.stdout
    proc = run_zoo("import", str(trained["root"] / "msgpack"), "--name", "bad", "--arch", "flax:os:getcwd", env=env)
    assert proc.returncode == 2 and "not a Flax module class" in proc.stderr, proc.stderr[-2000:]
    assert not (zoo_env.home / "local" / "bad").exists()


@pytest.mark.slow
def test_trained_nnx_checkpoint_pulls_to_tflite_through_onnx2tf(trained):
    """jax-fn -> onnx -> tflite (onnx2tf): 30-80 s on 2 shared cores (onnx2tf in its own process), so slow."""
    _need("onnx2tf")
    from zoo import pipeline
    from zoo.converters.parity.runners import tflite_runner
    from zoo.options import Options
    from zoo.registry.local_source import import_path

    import_path(trained["root"] / "msgpack", "cnn", _settings(), arch=ARCH)
    result = pipeline.pull("local:cnn", Options(format="tflite"))
    assert result.verified and result.conversion["chain"] == "jax-fn -> onnx -> tflite"
    (out,) = tflite_runner(Path(result.path), ["image"], ["logits"])({"image": trained["fresh"]})
    np.testing.assert_allclose(out, trained["expected"], atol=1e-4, rtol=1e-4)


# --- Linen from a checkpoint file -------------------------------------------------------------------------
LINEN_ARCH = "flax:flax_modules:LinenCNN"


@pytest.fixture(scope="module")
def trained_linen(tmp_path_factory):
    """LinenCNN after 3 adam steps (batch norm's statistics updated through ``mutable=["batch_stats"]``), its
    variables ({"params", "batch_stats"}) saved as msgpack and as orbax, each with flax_config.json and the
    reference.npz a training script records; a fresh input and the trained model's jax.jit outputs on it."""
    for m in ("jax", "flax", "optax", "orbax.checkpoint", "jax2onnx"):
        _need(m)
    import jax
    import optax
    import orbax.checkpoint as ocp
    from flax.serialization import to_bytes
    from flax_modules import LinenCNN

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)
    variables = LinenCNN(channels=4).init(jax.random.key(0), x)
    before = np.asarray(variables["batch_stats"]["BatchNorm_0"]["mean"])
    opt = optax.adam(1e-2)
    state = opt.init(variables["params"])

    @jax.jit
    def step(params, stats, state):
        def loss(p):
            logits, updates = LinenCNN(channels=4, train=True).apply({"params": p, "batch_stats": stats}, x,
                                                                     mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), stats, state, value

    params, stats = variables["params"], variables["batch_stats"]
    losses = []
    for _ in range(3):
        params, stats, state, value = step(params, stats, state)
        losses.append(float(value))
    assert losses[-1] < losses[0] and not np.allclose(stats["BatchNorm_0"]["mean"], before)  # it trained
    trained = {"params": params, "batch_stats": stats}
    infer = jax.jit(LinenCNN(channels=4).apply)
    config = {"kwargs": {"channels": 4}, "inputs": CONFIG["inputs"], "outputs": ["logits"]}
    root = tmp_path_factory.mktemp("linen")
    for fmt in ("msgpack", "orbax"):
        (root / fmt).mkdir()
        (root / fmt / "flax_config.json").write_text(json.dumps(config))
        np.savez(root / fmt / "reference.npz", **{"inputs/image": x[:4], "outputs/logits": np.asarray(infer(trained, x[:4]))})
    (root / "msgpack" / "model.msgpack").write_bytes(to_bytes(trained))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((root / "orbax" / "ckpt").resolve(), trained)
    checkpointer.wait_until_finished()
    fresh = rng.normal(size=(5, 8, 8, 1)).astype("float32")
    return {"root": root, "fresh": fresh, "expected": np.asarray(infer(trained, fresh))}


@pytest.mark.parametrize("fmt, checkpoint", [("msgpack", "msgpack/model.msgpack"), ("orbax", "orbax/ckpt")])
def test_trained_linen_checkpoint_imports_checks_its_reference_and_pulls_to_onnx(trained_linen, fmt, checkpoint):
    from zoo import pipeline
    from zoo.registry.local_source import import_path

    record = import_path(trained_linen["root"] / checkpoint, f"linen-{fmt}", _settings(), arch=LINEN_ARCH)
    notes = record.extra["checkpoint"]
    assert (notes["layout"], notes["module_kind"]) == (f"flax-{fmt}", "linen")
    assert notes["tensors"] == 8  # conv 2, batch norm 2 params + 2 statistics (batch_stats), dense 2
    assert notes["reference"]["passed"] and notes["reference"]["max_abs_diff"] < 1e-5, notes["reference"]
    result = pipeline.pull(f"local:linen-{fmt}")
    assert result.verified and result.parity["passed"], result.parity
    assert result.conversion["chain"] == "jax-fn -> onnx"
    (out,) = _onnx_outputs(result.path, {"image": trained_linen["fresh"]})  # the model at the end of training
    np.testing.assert_allclose(out, trained_linen["expected"], atol=1e-5, rtol=1e-5)


def test_convert_jax_converts_a_linen_model_from_python_and_answers_again_from_the_cache():
    jax = _need("jax")
    _need("flax")
    _need("jax2onnx")
    from flax_modules import LinenMLP

    import zoo

    model = LinenMLP(hidden=8, classes=3)
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    variables = model.init(jax.random.key(0), x)
    result = zoo.convert_jax(lambda v, a: model.apply(v, a), variables, x, name="mlp", input_names=["x"],
                             output_names=["logits"])
    assert result.verified and result.model == "jax/mlp"
    assert {s["name"] for s in result.parity["input_sets"]} >= {"example", "random-b1-s1"}
    fresh = np.random.default_rng(2).normal(size=(7, 6)).astype("float32")  # another batch size: dynamic axis
    (out,) = _onnx_outputs(result.path, {"x": fresh})
    np.testing.assert_allclose(out, np.asarray(jax.jit(model.apply)(variables, fresh)), atol=1e-5, rtol=1e-5)
    again = zoo.convert_jax(lambda v, a: model.apply(v, a), variables, x, name="mlp", input_names=["x"],
                            output_names=["logits"])
    assert again.cached and again.digest == result.digest
    # other weights are another model: never answered from the first one's cache
    other = jax.tree_util.tree_map(lambda a: a + 1, variables)
    moved = zoo.convert_jax(lambda v, a: model.apply(v, a), other, x, name="mlp", input_names=["x"],
                            output_names=["logits"])
    assert not moved.cached and moved.digest != result.digest


# --- hostile and wrong checkpoints: refused, nothing half-written ---------------------------------------
def _ndarray_ext(shape, dtype: bytes, buf: bytes):
    import msgpack

    return msgpack.ExtType(1, msgpack.packb((shape, dtype, buf), use_bin_type=True))


def _hostile_msgpack(kind: str) -> bytes:
    import msgpack

    leaf = {"ext-type": msgpack.ExtType(42, b"\x00" * 8),
            "object-dtype": _ndarray_ext([1], b"object", b"\x00" * 8),
            "oversized": _ndarray_ext([1 << 30, 1 << 8], b"float32", b"\x00" * 16),
            "short": _ndarray_ext([4, 4], b"float32", b"\x00" * 60)}[kind]
    return msgpack.packb({"conv": {"kernel": leaf}}, use_bin_type=True)


@pytest.mark.parametrize("kind, message", [
    ("ext-type", "extension type 42"),
    ("object-dtype", "dtype 'object'"),
    ("oversized", "declares float32[1073741824, 256] (1099511627776 bytes) but holds 16 bytes"),
    ("short", "declares float32[4, 4] (64 bytes) but holds 60 bytes"),
])
def test_hostile_msgpack_is_refused_before_anything_is_built(tmp_path, zoo_env, kind, message):
    _need("flax")
    from zoo.registry.local_source import import_path

    (tmp_path / "model.msgpack").write_bytes(_hostile_msgpack(kind))
    (tmp_path / "flax_config.json").write_text(json.dumps(CONFIG))
    with pytest.raises(errors.UnsafeModelError, match=re.escape(message)) as exc:
        import_path(tmp_path / "model.msgpack", "evil", _settings(), arch=ARCH)
    assert errors.exit_code_for(exc.value) == 7
    _nothing_written(zoo_env.home, "evil")


def test_a_msgpack_over_the_size_limit_is_refused(trained, zoo_env, monkeypatch):
    from zoo.registry.local_source import import_path

    monkeypatch.setenv("ZOO_FLAX_MAX_BYTES", "100")
    with pytest.raises(errors.UnsafeModelError, match="over the limit of 100"):
        import_path(trained["root"] / "msgpack", "big", _settings(), arch=ARCH)
    _nothing_written(zoo_env.home, "big")


def _copy_orbax(trained, tmp_path) -> Path:
    import shutil

    dest = tmp_path / "ckpt"
    shutil.copytree(trained["root"] / "orbax" / "ckpt", dest)
    (tmp_path / "flax_config.json").write_text(json.dumps(CONFIG))
    return dest


def test_an_orbax_tree_key_that_is_a_path_is_refused(trained, tmp_path, zoo_env):
    from zoo.registry.local_source import import_path

    ckpt = _copy_orbax(trained, tmp_path)
    meta = json.loads((ckpt / "_METADATA").read_text())
    entry = next(iter(meta["tree_metadata"].values()))
    entry["key_metadata"][0]["key"] = "../../outside"
    (ckpt / "_METADATA").write_text(json.dumps(meta))
    with pytest.raises(errors.UnsafeModelError, match="could name a path outside"):
        import_path(ckpt, "escape", _settings(), arch=ARCH)
    _nothing_written(zoo_env.home, "escape")


def test_an_orbax_link_out_of_the_checkpoint_is_refused(trained, tmp_path, zoo_env):
    from zoo.registry.local_source import import_path

    ckpt = _copy_orbax(trained, tmp_path)
    (tmp_path / "secret").write_bytes(b"not yours")
    target = next(p for p in (ckpt / "d").iterdir() if p.is_file())
    target.unlink()
    target.symlink_to(tmp_path / "secret")
    with pytest.raises(errors.UnsafeModelError, match="symbolic link"):
        import_path(ckpt, "link", _settings(), arch=ARCH)
    _nothing_written(zoo_env.home, "link")


def test_a_checkpoint_of_another_shape_lists_what_does_not_fit(trained, tmp_path, zoo_env):
    import shutil

    from zoo.registry.local_source import import_path

    shutil.copy(trained["root"] / "msgpack" / "model.msgpack", tmp_path / "model.msgpack")
    (tmp_path / "flax_config.json").write_text(json.dumps({**CONFIG, "kwargs": {"channels": 6}}))
    with pytest.raises(errors.InvalidModelError, match="mismatched") as exc:
        import_path(tmp_path / "model.msgpack", "wrong", _settings(), arch=ARCH)
    assert errors.exit_code_for(exc.value) == 7
    assert "conv/kernel: checkpoint float32[3, 3, 1, 4], module float32[3, 3, 1, 6]" in exc.value.details["mismatched"]
    _nothing_written(zoo_env.home, "wrong")


def test_a_checkpoint_that_does_not_reproduce_its_training_reference_is_refused(trained, tmp_path, zoo_env):
    import shutil

    from zoo.registry.local_source import import_path

    for f in ("model.msgpack", "flax_config.json"):
        shutil.copy(trained["root"] / "msgpack" / f, tmp_path / f)
    with np.load(trained["root"] / "msgpack" / "reference.npz") as ref:
        np.savez(tmp_path / "reference.npz", **{"inputs/image": ref["inputs/image"],
                                                "outputs/logits": ref["outputs/logits"] + 0.01})
    with pytest.raises(errors.ReferenceMismatchError, match="does not reproduce the reference recorded at training time") as exc:
        import_path(tmp_path / "model.msgpack", "drifted", _settings(), arch=ARCH)
    assert errors.exit_code_for(exc.value) == 6 and not exc.value.details["reference"]["passed"]
    _nothing_written(zoo_env.home, "drifted")


def _nothing_written(home: Path, name: str) -> None:
    assert not (home / "local" / name).exists()
    assert not any((home / "tmp").glob("*")) if (home / "tmp").exists() else True


def test_a_flax_only_hub_repo_says_how_to_convert_it():
    from zoo.registry.hf_source import choose_files

    with pytest.raises(errors.UnsupportedError, match="Flax-only repo") as exc:
        choose_files(["config.json", "flax_model.msgpack"])
    assert errors.exit_code_for(exc.value) == 5 and "transformers<5" in exc.value.hint


def test_msgpack_reader_takes_what_flax_writes(tmp_path):
    """The reader is strict, not narrow: everything flax.serialization writes comes back (scalars, bfloat16,
    chunked arrays), equal to flax's own msgpack_restore."""
    _need("flax")
    import jax.numpy as jnp
    from flax import serialization

    from zoo.converters.loaders.flax_models import read_msgpack

    tree = {"a": np.arange(6, dtype="int32").reshape(2, 3), "b": {"s": np.float32(2.5), "h": jnp.ones(3, jnp.bfloat16)},
            "n": 3, "t": "text"}
    old = serialization.MAX_CHUNK_SIZE
    serialization.MAX_CHUNK_SIZE = 8  # force flax's chunked form for the arrays over 8 bytes
    try:
        data = serialization.msgpack_serialize(tree)
    finally:
        serialization.MAX_CHUNK_SIZE = old
    (tmp_path / "t.msgpack").write_bytes(data)
    ours, theirs = read_msgpack(tmp_path / "t.msgpack", 1 << 20), serialization.msgpack_restore(data)
    np.testing.assert_array_equal(ours["a"], theirs["a"])
    assert ours["b"]["s"] == theirs["b"]["s"] and ours["n"] == 3 and ours["t"] == "text"
    assert str(ours["b"]["h"].dtype) == "bfloat16"
