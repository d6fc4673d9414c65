"""Training checkpoints as sources (issue 15): Lightning, DDP / torch.compile prefixes, plain and sharded
state dicts, DeepSpeed ZeRO, torch.distributed.checkpoint (FSDP). Real (tiny) training runs make the
fixtures; each goes import -> pull -> parity, and the artifact is checked against the trained model."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo

ARCH = "test_resnet"  # timm's tiny test network (no download: built with random weights)


def need(module: str):
    """A test dependency: missing on CI is a failure (the extras install it), elsewhere a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def _settings():
    from zoo.settings import get_settings

    return get_settings()


def _import(path: Path, name: str, arch: str | None = None):
    from zoo.registry.local_source import import_path

    return import_path(path, name, _settings(), arch=arch)


def _stored_state(record) -> dict:
    from safetensors.torch import load_file

    return load_file(str(_settings().home / "local" / record.name / record.revision / "model.safetensors"))


def _timm(num_classes: int = 4, seed: int = 0):
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model(ARCH, num_classes=num_classes).eval()


def _pull_onnx(name: str) -> dict:
    proc = run_zoo("pull", f"local:{name}", "--format", "onnx", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["verified"] and result["parity"]["passed"], result["parity"]
    return result


def _onnx_matches(result: dict, module, shape=(2, 3, 160, 160)) -> None:
    """The converted artifact against the model as it was at the end of training."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def record_reference(path, model, seed=7):
    """What a training script runs at its end: the model in eval mode on a few fixed inputs, saved beside the
    checkpoint as zoo's reference.npz (registry/checkpoints/reference.py); ``path`` None: run only (the other
    ranks of a sharded model take part in its forward). The subprocess training scripts below hold this
    function's own source (RECORD)."""
    import numpy
    import torch

    x = torch.from_numpy(numpy.random.default_rng(seed).standard_normal((4, 3, 32, 32)).astype("float32"))
    model.eval()
    with torch.no_grad():
        y = model(x)
    if path is not None:
        numpy.savez(path, **{"inputs/input": x.numpy(), "outputs/logits": y.float().numpy()})
    return y


RECORD = inspect.getsource(record_reference)


def _reference_checked(notes: dict, name: str) -> None:
    """The import ran the rebuilt model on the recorded inputs and it matched."""
    ref = notes["reference"]
    assert ref["file"] == name and ref["passed"] and ref["inputs"] == {"input": [4, 3, 32, 32]}, ref
    assert ref["max_abs_diff"] < ref["outputs"]["logits"]["atol"] and ref["precision"] == "float32", ref


# --- Lightning -----------------------------------------------------------------
@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory):
    """Three real optimizer steps of a timm body in a LightningModule, one CPU process."""
    L = need("lightning")
    import timm
    import torch

    class Classifier(L.LightningModule):
        def __init__(self, model_name: str = ARCH, num_classes: int = 4, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.model = timm.create_model(model_name, num_classes=num_classes)
            self.loss = torch.nn.CrossEntropyLoss()

        def training_step(self, batch, _):
            x, y = batch
            return self.loss(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    out = tmp_path_factory.mktemp("lightning")
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(12, 3, 32, 32), torch.randint(0, 4, (12,)))
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(out))
    module = Classifier()
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(out / "last.ckpt")
    record_reference(out / "last.reference.npz", module.model)
    assert any(not torch.equal(before[k], v) for k, v in module.model.state_dict().items())  # it trained
    return out / "last.ckpt", module.model.eval()


def test_lightning_ckpt_imports_from_its_hyper_parameters_and_converts(indexed, lightning_run):
    ckpt, trained = lightning_run
    proc = run_zoo("import", str(ckpt), "--name", "lit", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert (record["library"], record["arch"], record["num_classes"]) == ("timm", ARCH, 4)
    notes = record["extra"]["checkpoint"]
    assert notes["layout"] == "lightning" and notes["global_step"] == 3 and notes["prefix"] == "model."
    assert notes["architecture_from"] == f"hyper_parameters['model_name']={ARCH}"
    _reference_checked(notes, "last.reference.npz")
    _onnx_matches(_pull_onnx("lit"), trained)


def test_a_reference_the_checkpoint_does_not_reproduce_is_refused_exit_6(indexed, lightning_run, tmp_path):
    """Outputs recorded at training time, scaled by 1.01 (a 1% drift): the import is refused, nothing stored."""
    import shutil

    ckpt, _ = lightning_run
    shutil.copyfile(ckpt, tmp_path / "last.ckpt")
    with np.load(ckpt.with_name("last.reference.npz")) as ref:
        np.savez(tmp_path / "reference.npz", **{"inputs/input": ref["inputs/input"],  # the folder-wide name
                                                "outputs/logits": ref["outputs/logits"] * 1.01})
    proc = run_zoo("import", str(tmp_path / "last.ckpt"), "--name", "drift")
    assert proc.returncode == 6, proc.stderr[-3000:]
    assert "does not reproduce the reference recorded at training time (reference.npz)" in proc.stderr
    assert "logits on training-reference" in proc.stderr and "nothing was imported" in proc.stderr
    home = Path(os.environ["ZOO_HOME"])
    assert not (home / "local" / "drift").exists() and not list((home / "tmp").glob("*"))
    assert "drift" not in run_zoo("list", "--source", "local").stdout
    # a reference that does not fit the model (an input it does not take) is a bad file: exit 7
    np.savez(tmp_path / "reference.npz", **{"inputs/pixels": np.zeros((1, 3, 32, 32), np.float32),
                                            "outputs/logits": np.zeros((1, 4), np.float32)})
    from zoo import errors

    with pytest.raises(errors.InvalidModelError, match="lacks inputs/input; has inputs/pixels") as info:
        _import(tmp_path / "last.ckpt", "drift")
    assert errors.exit_code_for(info.value) == 7


def test_the_reference_precision_decides_the_tolerance(indexed, tmp_path):
    """A reference recorded under mixed precision (float16 outputs, or a ``precision`` entry) is held to that
    precision's parity tolerance: float32 outputs 5e-3 off are refused, the same drift at float16 or bfloat16 passes."""
    import torch

    from zoo import errors

    model = _timm(4, seed=2)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    y = record_reference(None, model).numpy()
    x = np.random.default_rng(7).standard_normal((4, 3, 32, 32)).astype(np.float32)  # record_reference's inputs
    for outputs, extra, passes in ((y + 5e-3, {}, False), ((y + 5e-3).astype(np.float16), {}, True),
                                   (y + 5e-3, {"precision": np.array("bfloat16")}, True)):
        np.savez(tmp_path / "plain.reference.npz", **{"inputs/input": x, "outputs/logits": outputs}, **extra)
        if passes:
            ref = _import(tmp_path / "plain.pt", "mixed", arch=f"timm:{ARCH}").extra["checkpoint"]["reference"]
            assert ref["passed"] and ref["precision"] in ("float16", "bfloat16"), ref
        else:
            with pytest.raises(errors.ReferenceMismatchError):
                _import(tmp_path / "plain.pt", "mixed", arch=f"timm:{ARCH}")
    np.savez(tmp_path / "plain.reference.npz", **{"inputs/input": x, "outputs/logits": y, "precision": np.array("fp8")})
    with pytest.raises(errors.InvalidModelError, match="precision 'fp8' is none of"):
        _import(tmp_path / "plain.pt", "mixed", arch=f"timm:{ARCH}")


def test_ddp_and_compile_prefixes_are_stripped_and_weights_kept_exactly(indexed, tmp_path):
    import torch

    model = _timm(5, seed=3)
    # DDP around torch.compile(model), and one block compiled on its own (its _orig_mod. sits mid-name)
    wrapped = {f"module._orig_mod.{k.replace('layer1.', 'layer1._orig_mod.', 1)}": v for k, v in model.state_dict().items()}
    torch.save(wrapped, tmp_path / "ddp.pt")
    record = _import(tmp_path / "ddp.pt", "ddp", arch=f"timm:{ARCH}")
    assert record.num_classes == 5  # the head's width read from the checkpoint
    assert record.extra["checkpoint"]["layout"] == "state-dict+ddp+torch.compile"
    stored = _stored_state(record)
    assert set(stored) == set(model.state_dict())
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())


def test_training_checkpoint_dict_horovod_style(indexed, tmp_path):
    import torch

    model = _timm(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 7}, tmp_path / "hvd.pth.tar.pt")
    record = _import(tmp_path / "hvd.pth.tar.pt", "hvd", arch=f"timm:{ARCH}")
    assert record.extra["checkpoint"]["epoch"] == 7 and record.extra["checkpoint"]["state_key"] == "model"


def test_sharded_safetensors_with_index_and_arch_from_config_json(indexed, tmp_path):
    import torch
    from safetensors.torch import save_file

    model = _timm(4, seed=5)
    state = model.state_dict()
    names = sorted(state)
    half = len(names) // 2
    out = tmp_path / "accelerate"
    out.mkdir()
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:]), 1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({k: state[k].contiguous() for k in part}, str(out / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "arch.json").write_text(json.dumps({"architecture": ARCH, "num_classes": 4}))
    record = _import(out, "acc", arch=str(tmp_path / "arch.json"))
    assert record.extra["checkpoint"]["layout"] == "safetensors-sharded" and record.extra["checkpoint"]["shards"] == 2
    stored = _stored_state(record)
    assert all(torch.equal(stored[k], v) for k, v in state.items())
    # an index that names a shard outside the directory is refused
    weight_map[names[0]] = "../outside.safetensors"
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _refused(out, "outside.safetensors", unsafe=True)


def test_missing_unexpected_and_mismatched_keys_exit_7_listing_them(indexed, tmp_path):
    import torch

    from zoo import errors

    state = _timm(4).state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(errors.InvalidModelError) as info:
        _import(tmp_path / "bad.pt", "bad", arch=f"timm:{ARCH}")
    details = info.value.details
    assert details["missing"] == ["fc.bias"] and details["unexpected"] == ["extra.weight"]
    assert details["mismatched"] == ["conv1.0.weight: checkpoint [1, 1, 1, 1] vs model [16, 3, 3, 3]"]
    proc = run_zoo("import", str(tmp_path / "bad.pt"), "--name", "bad", "--arch", f"timm:{ARCH}")
    assert proc.returncode == 7
    assert "fc.bias" in proc.stderr and "extra.weight" in proc.stderr and "conv1.0.weight" in proc.stderr
    assert not (Path(os.environ["ZOO_HOME"]) / "local" / "bad").exists()  # nothing half-written
    tmp = Path(os.environ["ZOO_HOME"]) / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


def test_no_architecture_anywhere_is_a_usage_error_saying_arch(indexed, tmp_path):
    import torch

    torch.save(_timm(4).state_dict(), tmp_path / "plain.pt")
    from zoo import errors

    with pytest.raises(errors.UsageError) as info:
        _import(tmp_path / "plain.pt", "plain")
    assert "--arch timm:" in info.value.hint and errors.exit_code_for(info.value) == 2


def test_hostile_lightning_ckpt_refused_before_any_unpickling(indexed, tmp_path):
    import torch
    from hostile import Canary

    canary = tmp_path / "canary"
    state = _timm(4).state_dict()
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "pytorch-lightning_version": "2.6.6",
                "hyper_parameters": {"model_name": ARCH, "cb": Canary(canary, "system")}}, tmp_path / "evil.ckpt")
    proc = run_zoo("import", str(tmp_path / "evil.ckpt"), "--name", "evil")
    assert proc.returncode == 7 and "refusing evil.ckpt" in proc.stderr and "system" in proc.stderr
    assert not canary.exists()


# --- DeepSpeed ZeRO --------------------------------------------------------------
DS_TRAIN = '''
import os, sys
import torch, timm
os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", LOCAL_RANK=os.environ["RANK"])
import deepspeed
stage, out, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
model = timm.create_model("test_resnet", num_classes=3)  # fc.bias: 3 values, split unevenly over 2 ranks
cfg = {"train_micro_batch_size_per_gpu": 2, "zero_allow_untested_optimizer": True,
       "zero_optimization": {"stage": stage}, "optimizer": {"type": "SGD", "params": {"lr": 0.05}}}
deepspeed.init_distributed(dist_backend="gloo")
engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
torch.manual_seed(1 + int(os.environ["RANK"]))  # each rank its own data
for _ in range(steps):
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2,))
    engine.backward(torch.nn.functional.cross_entropy(engine(x), y))
    engine.step()
engine.save_checkpoint(out)
torch.distributed.barrier()
engine.eval()  # every rank runs the forward (ZeRO-3 gathers its partitioned weights); rank 0 records it
record_reference(out + "/reference.npz" if os.environ["RANK"] == "0" else None, engine)
sys.stdout.flush()
os._exit(0)  # no teardown: gloo's process-group destructor can abort at interpreter exit
'''


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_run(tmp: Path, stage: int, world: int = 2, steps: int = 2) -> Path:
    """A real DeepSpeed ZeRO run on the CPU: ``world`` gloo processes, a few SGD steps, save_checkpoint."""
    import subprocess
    import sys

    need("deepspeed")
    script = tmp / "ds_train.py"
    script.write_text(RECORD + DS_TRAIN)
    out = tmp / f"zero{stage}"
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(stage), str(out), str(steps)],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(world), "MASTER_PORT": port,
                                   "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(world)]
    for p in procs:
        log = p.communicate(timeout=900)[0]  # importing torch + deepspeed alone took 3 min on 2 busy shared cores
        assert p.returncode == 0, log.decode(errors="replace")[-3000:]
    return out


def _deepspeed_reference(out: Path) -> dict:
    """DeepSpeed's own consolidation (zero_to_fp32), run by the test only, on the test's own files."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(out))


def _check_zero_import(out: Path, name: str, stage: int, world: int) -> dict:
    import torch

    record = _import(out, name, arch=f"timm:{ARCH}")
    notes = record.extra["checkpoint"]
    assert (notes["layout"], notes["zero_stage"], notes["ranks"], notes["tag"]) == (f"deepspeed-zero{stage}", stage, world, "global_step2")
    _reference_checked(notes, "reference.npz")
    stored, reference = _stored_state(record), _deepspeed_reference(out)
    assert set(stored) == set(reference)
    for k, v in reference.items():
        assert stored[k].dtype == torch.float32 and torch.equal(stored[k], v.float()), k
    return stored


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory) -> Path:
    return deepspeed_run(tmp_path_factory.mktemp("zero3"), 3)


def test_deepspeed_zero3_two_ranks_consolidates_like_zero_to_fp32(indexed, zero3_run):
    _check_zero_import(zero3_run, "z3", 3, 2)


@pytest.mark.slow
def test_deepspeed_zero3_import_pull_parity_against_the_trained_weights(indexed, zero3_run):
    stored = _check_zero_import(zero3_run, "z3", 3, 2)
    trained = _timm(3)
    trained.load_state_dict(stored)
    _onnx_matches(_pull_onnx("z3"), trained)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero1_and_2_two_ranks(indexed, tmp_path, stage):
    _check_zero_import(deepspeed_run(tmp_path, stage), f"z{stage}", stage, 2)


def test_a_zero3_shard_changed_after_training_is_caught_by_its_reference(indexed, zero3_run, tmp_path):
    """One rank's fp32 partition nudged after training: the shards stay self-consistent, so consolidation cannot
    tell; the outputs recorded at training time can. Exit 6, nothing imported; without the reference it imports."""
    import shutil

    from zoo import errors

    bad = tmp_path / "nudged"
    shutil.copytree(zero3_run, bad)

    def nudge(o):
        o["optimizer_state_dict"]["fp32_flat_groups"][0].data[:64] *= 1.5

    _rewrite(bad / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt", nudge)
    with pytest.raises(errors.ReferenceMismatchError, match="does not reproduce the reference") as info:
        _import(bad, "nudged", arch=f"timm:{ARCH}")
    assert errors.exit_code_for(info.value) == 6
    figures = info.value.details["reference"]
    assert not figures["passed"] and figures["max_abs_diff"] > figures["outputs"]["logits"]["atol"], figures
    home = Path(os.environ["ZOO_HOME"])
    assert not (home / "local" / "nudged").exists() and not list((home / "tmp").glob("*"))
    (bad / "reference.npz").unlink()
    assert "reference" not in _import(bad, "nudged", arch=f"timm:{ARCH}").extra["checkpoint"]


def _refused(path: Path, words: str, unsafe: bool = False) -> None:
    from zoo import errors

    with pytest.raises(errors.UnsafeModelError if unsafe else errors.InvalidModelError, match=words):
        _import(path, "refused", arch=f"timm:{ARCH}")
    tmp = Path(os.environ["ZOO_HOME"]) / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


def _rewrite(path: Path, edit) -> None:
    """Change a test's own DeepSpeed pickle (trusted here: the test wrote it) and save it back."""
    import torch

    obj = torch.load(path, weights_only=False)
    edit(obj)
    torch.save(obj, path)


def test_deepspeed_zero_hostile_and_inconsistent_shards_refused(indexed, zero3_run, tmp_path):
    import shutil

    from hostile import Canary

    out = zero3_run
    step = out / "global_step2"
    bad = tmp_path / "shapes"
    shutil.copytree(out, bad)

    def grow(o):  # rank 0 claims a wider first conv than the shards hold
        first = next(iter(o["param_shapes"][0]))
        import torch

        o["param_shapes"][0][first] = torch.Size([32, 3, 3, 3])

    _rewrite(bad / "global_step2" / "zero_pp_rank_0_mp_rank_00_model_states.pt", grow)
    _refused(bad, "runs past the shards")
    # a rank's optimizer shard missing
    (bad / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    shutil.copyfile(step / "zero_pp_rank_0_mp_rank_00_model_states.pt", bad / "global_step2" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    _refused(bad, "2 ranks but 1 optim_states")
    # a shard whose pickle would run code
    canary = tmp_path / "canary"
    evil = tmp_path / "evil"
    shutil.copytree(out, evil)
    _rewrite(evil / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt",
             lambda o: o["optimizer_state_dict"].__setitem__("loss_scaler", Canary(canary, "system")))
    _refused(evil, "system", unsafe=True)
    # latest naming a directory outside
    (evil / "latest").write_text("../../etc")
    _refused(evil, "not a checkpoint tag", unsafe=True)
    assert not canary.exists()


# --- FSDP / torch.distributed.checkpoint ------------------------------------------
FSDP_TRAIN = '''
import os, sys
import torch, timm
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
out, steps = sys.argv[1], int(sys.argv[2])
dist.init_process_group("gloo")
torch.manual_seed(0)
model = timm.create_model("test_resnet", num_classes=4)
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for block in (model.layer1, model.layer2, model.layer3, model.layer4):
    fully_shard(block, mesh=mesh)
fully_shard(model, mesh=mesh)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
torch.manual_seed(1 + dist.get_rank())
for _ in range(steps):
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()
# Batch norm's running statistics are plain (replicated) buffers that each rank updated on its own data, and DCP
# saves one rank's copy: averaged over the ranks first, as timm's train.py does (distribute_bn), so that every rank
# holds the model the checkpoint holds (without it, rank 0's recorded reference is refused at import).
for buffer in model.buffers():
    if buffer.is_floating_point():
        dist.all_reduce(buffer)
        buffer /= dist.get_world_size()
msd, osd = get_state_dict(model, opt)  # DTensor shards
dcp.save({"model": msd, "optim": osd}, checkpoint_id=out)
record_reference(out + "/reference.npz" if dist.get_rank() == 0 else None, model)  # every rank runs the forward
sys.stdout.flush()
os._exit(0)
'''


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """A real FSDP2 (fully_shard) run on 2 gloo CPU processes, saved with torch.distributed.checkpoint."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("fsdp")
    (tmp / "train.py").write_text(RECORD + FSDP_TRAIN)
    out, port = tmp / "dcp", str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(tmp / "train.py"), str(out), "2"],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": port, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    for p in procs:
        log = p.communicate(timeout=900)[0]  # a bound, not a cost: imports alone can take minutes on 2 busy shared cores
        assert p.returncode == 0, log.decode(errors="replace")[-3000:]
    return out


def _check_dcp_import(fsdp_run: Path, tmp_path: Path):
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    assert sorted(p.name for p in fsdp_run.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "reference.npz"]
    record = _import(fsdp_run, "fsdp", arch=f"timm:{ARCH}")
    notes = record.extra["checkpoint"]
    assert notes["layout"] == "dcp" and notes["ranks"] == 2 and notes["prefix"] == "model."
    _reference_checked(notes, "reference.npz")
    dcp_to_torch_save(fsdp_run, tmp_path / "torch.pt")  # torch's own consolidation, as the reference
    reference = torch.load(tmp_path / "torch.pt", weights_only=True)["model"]
    stored = _stored_state(record)
    assert set(stored) == set(reference)
    assert all(torch.equal(stored[k], v) for k, v in reference.items())
    return reference


def test_fsdp_dcp_two_ranks_consolidates_like_dcp_to_torch_save(indexed, fsdp_run, tmp_path):
    _check_dcp_import(fsdp_run, tmp_path)


@pytest.mark.slow
def test_fsdp_dcp_import_pull_parity_against_the_trained_weights(indexed, fsdp_run, tmp_path):
    trained = _timm(4)
    trained.load_state_dict(_check_dcp_import(fsdp_run, tmp_path))
    _onnx_matches(_pull_onnx("fsdp"), trained)


def test_dcp_metadata_pointing_outside_or_with_a_payload_refused(indexed, fsdp_run, tmp_path):
    import pickle
    import shutil

    from hostile import Canary

    bad = tmp_path / "outside"
    shutil.copytree(fsdp_run, bad)
    meta = pickle.loads((bad / ".metadata").read_bytes())  # the test's own file
    first = next(iter(meta.storage_data))
    shutil.copyfile(bad / meta.storage_data[first].relative_path, tmp_path / "elsewhere.distcp")
    meta.storage_data[first].relative_path = "../elsewhere.distcp"
    (bad / ".metadata").write_bytes(pickle.dumps(meta))
    _refused(bad, "outside the checkpoint directory", unsafe=True)
    canary = tmp_path / "canary"
    meta.storage_meta = Canary(canary, "system")
    (bad / ".metadata").write_bytes(pickle.dumps(meta))
    _refused(bad, "system", unsafe=True)
    assert not canary.exists()
    # a chunk whose stored tensor is not what the metadata says (shape): refused, not reshaped
    swapped = tmp_path / "swapped"
    shutil.copytree(fsdp_run, swapped)
    meta = pickle.loads((swapped / ".metadata").read_bytes())
    keys = [k for k in meta.storage_data if k.fqn.startswith("model.") and k.fqn.endswith("conv1.weight")]
    meta.storage_data[keys[0]], meta.storage_data[keys[1]] = meta.storage_data[keys[1]], meta.storage_data[keys[0]]
    (swapped / ".metadata").write_bytes(pickle.dumps(meta))
    _refused(swapped, "the metadata says")
    # overlapping chunks: the second row block of a tensor moved up one row (it overlaps the first and leaves
    # the last row uncovered); refused from the metadata, before any chunk is read
    import torch

    overlap = tmp_path / "overlap"
    shutil.copytree(fsdp_run, overlap)
    meta = pickle.loads((overlap / ".metadata").read_bytes())
    fqn, md = next((k, v) for k, v in meta.state_dict_metadata.items()
                   if k.endswith("conv1.weight") and len(getattr(v, "chunks", [])) == 2)
    second = md.chunks[1]
    moved = (second.offsets[0] - 1, *second.offsets[1:])
    index = next(k for k in meta.storage_data if k.fqn == fqn and tuple(k.offset) == tuple(second.offsets))
    meta.storage_data[type(index)(fqn, torch.Size(moved), index.index)] = meta.storage_data.pop(index)
    md.chunks[1] = type(second)(offsets=torch.Size(moved), sizes=second.sizes)
    (overlap / ".metadata").write_bytes(pickle.dumps(meta))
    _refused(overlap, f"chunks of {fqn} overlap")


# --- FastAI ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fastai_run(tmp_path_factory):
    """One epoch of a real fastai vision_learner on a timm body, on a tiny image folder; learn.save and export."""
    need("fastai")
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, imagenet_stats, vision_learner
    from PIL import Image

    tmp = tmp_path_factory.mktemp("fastai")
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp / "images" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp / "images" / label / f"{i}.png")
    dls = ImageDataLoaders.from_folder(tmp / "images", valid_pct=0.25, seed=0, bs=2, item_tfms=Resize(32),
                                       batch_tfms=Normalize.from_stats(*imagenet_stats), num_workers=0)
    learn = vision_learner(dls, ARCH, pretrained=False, path=tmp)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    weights = learn.save("stage1")
    record_reference(weights.parent / "reference.npz", learn.model)  # models/reference.npz, beside models/stage1.pth
    learn.export(tmp / "export.pkl")
    return weights, tmp / "export.pkl", learn.model.eval()


@pytest.mark.slow
def test_fastai_learn_save_weights_rebuilt_on_their_timm_body_and_converted(indexed, fastai_run):
    weights, _, trained = fastai_run
    record = _import(weights, "fa", arch=f"fastai:timm:{ARCH}")
    assert record.num_classes == 2 and record.extra["timm_config"]["fastai_head"]["widths"] == [192, 512, 2]
    _reference_checked(record.extra["checkpoint"], "reference.npz")
    _onnx_matches(_pull_onnx("fa"), trained)
    from zoo import errors

    with pytest.raises(errors.InvalidModelError, match="unexpected keys"):  # the head is never dropped
        _import(weights, "fa2", arch=f"timm:{ARCH}")


@pytest.mark.slow
def test_fastai_export_pkl_read_without_running_and_refused(indexed, fastai_run):
    from zoo import errors

    _, export, _ = fastai_run
    with pytest.raises(errors.UnsafeModelError) as info:
        _import(export, "fx")
    read = info.value.details["fastai_export"]
    assert read["architecture"] == ARCH and read["labels"] == ["cat", "dog"]
    assert read["mean"] == [0.485, 0.456, 0.406] and read["std"] == [0.229, 0.224, 0.225]
    assert "fastai.vision.learner.TimmBody" in read["classes"]
    assert "learn.save('NAME')" in info.value.hint


def test_fastai_export_pkl_with_a_payload_refused_nothing_run(indexed, tmp_path):
    """A learner-looking pickle (fastai's Learner global) that would also call os.system."""
    import torch
    from hostile import Canary

    canary = tmp_path / "canary"
    learner_cls = type("Learner", (), {"__module__": "fastai.learner"})
    import sys
    import types

    fake = types.ModuleType("fastai.learner")  # only so that pickle can name the class; removed after
    fake.Learner = learner_cls
    sys.modules.setdefault("fastai", types.ModuleType("fastai"))
    real = sys.modules.get("fastai.learner")
    sys.modules["fastai.learner"] = fake
    try:
        obj = learner_cls()
        obj.model = {"w": torch.zeros(2)}
        obj.cb = Canary(canary, "system")
        torch.save(obj, tmp_path / "export.pkl")
    finally:
        if real is not None:
            sys.modules["fastai.learner"] = real
        else:
            del sys.modules["fastai.learner"]
    proc = run_zoo("import", str(tmp_path / "export.pkl"), "--name", "fx")
    assert proc.returncode == 7 and "refusing export.pkl" in proc.stderr and "system" in proc.stderr, proc.stderr
    assert "learn.save" in proc.stderr and not canary.exists()


# --- Lightning with the ddp strategy (2 gloo processes) ----------------------------------
LIGHTNING_DDP = '''
import sys, torch, timm, lightning as L


class Classifier(L.LightningModule):
    def __init__(self, model_name="test_resnet", num_classes=3, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.model = timm.create_model(model_name, num_classes=num_classes)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


if __name__ == "__main__":
    out = sys.argv[1]
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 3, (16,)))
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=out)
    module = Classifier()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(out + "/last.ckpt")
    if trainer.global_rank == 0:  # the model as it was at the end of training, for the test to compare with
        torch.save(module.model.state_dict(), out + "/final_weights.pt")
        record_reference(out + "/last.reference.npz", module.model)
'''


@pytest.mark.slow
def test_lightning_ddp_strategy_two_processes(indexed, tmp_path):
    import subprocess
    import sys

    import torch

    need("lightning")
    (tmp_path / "train.py").write_text(RECORD + LIGHTNING_DDP)
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(tmp_path / "train.py"), str(out)], capture_output=True, text=True, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = _import(out / "last.ckpt", "ddp")
    assert record.extra["checkpoint"]["layout"] == "lightning" and record.extra["checkpoint"]["global_step"] == 2
    _reference_checked(record.extra["checkpoint"], "last.reference.npz")
    final = torch.load(out / "final_weights.pt", weights_only=True)
    stored = _stored_state(record)
    assert set(stored) == set(final) and all(torch.equal(stored[k], v) for k, v in final.items())
    trained = _timm(3)
    trained.load_state_dict(final)
    _onnx_matches(_pull_onnx("ddp"), trained)


# --- transformers: the architecture named by a hub repo -------------------------------------
@pytest.mark.parametrize("where", ["config.json", pytest.param("hub", marks=pytest.mark.slow)])
def test_transformers_state_dict_with_arch_from_a_config_or_a_hub_repo(indexed, tmp_path, request, where):
    """A DDP-saved transformers ViT classifier; --arch path/config.json, or hf:ORG/NAME (only the repo's configs
    are read, from the local hub server)."""
    import torch
    import transformers
    from builders import vit_image_classifier_repo

    files = vit_image_classifier_repo()
    if where == "hub":
        request.getfixturevalue("hub_endpoint")
        arch = "hf:zoo-test/tiny-vit-classifier"
    else:
        (tmp_path / "arch").mkdir()
        for name in ("config.json", "preprocessor_config.json"):
            if name in files:
                (tmp_path / "arch" / name).write_bytes(files[name])
        arch = str(tmp_path / "arch" / "config.json")
    config = transformers.AutoConfig.for_model(**json.loads(files["config.json"]))
    torch.manual_seed(4)
    model = transformers.ViTForImageClassification(config).eval()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "vit.pt")
    record = _import(tmp_path / "vit.pt", "vit", arch=arch)
    assert (record.library, record.arch, record.task) == ("transformers", "ViTForImageClassification", "image-classification")
    assert record.extra["checkpoint"]["layout"] == "state-dict+ddp"
    stored = _stored_state(record)
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    if where == "hub":  # the pull of a rewritten transformers model, once (slow)

        class Logits(torch.nn.Module):
            def forward(self, x):
                return model(pixel_values=x).logits

        size = config.image_size
        _onnx_matches(_pull_onnx("vit"), Logits(), shape=(2, config.num_channels, size, size))
    # the weights of another width do not fit: listed, exit 7
    from zoo import errors

    small = transformers.ViTForImageClassification(transformers.AutoConfig.for_model(
        **{**json.loads(files["config.json"]), "hidden_size": config.hidden_size // 2}))
    torch.save(small.state_dict(), tmp_path / "small.pt")
    with pytest.raises(errors.InvalidModelError, match="shape mismatches"):
        _import(tmp_path / "small.pt", "small", arch=arch)
