"""What every checkpoint layout shares: the safe pickle load, key normalisation, the architecture
(from the checkpoint or ``--arch``), the strict key / shape match, and the plain model directory
that ``import_directory`` then imports."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import errors

if TYPE_CHECKING:
    from zoo.settings import Settings

ARCH_HINT = ("name the architecture: --arch timm:resnet18, --arch hf:org/name, or --arch path/to/config.json "
             "(a Hugging Face config.json, or timm's {\"architecture\": \"resnet18\", \"num_classes\": 10})")
# Lightning hyper-parameters that name the model a LightningModule wraps, in the order they are tried.
HPARAM_ARCH_KEYS = ("arch", "architecture", "model_name", "model_arch", "backbone", "timm_model", "base_model",
                    "model_name_or_path", "pretrained_model_name_or_path", "model")
HPARAM_CLASSES_KEYS = ("num_classes", "num_labels", "n_classes")
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "merges.txt",
              "vocab.json", "preprocessor_config.json", "sentencepiece.bpe.model", "spiece.model")
# What timm's pretrained_cfg says about inputs and the head (not which published weights: these are the user's).
TIMM_CFG_KEYS = ("input_size", "test_input_size", "fixed_input_size", "interpolation", "crop_pct", "test_crop_pct",
                 "crop_mode", "mean", "std", "first_conv", "classifier", "pool_size")
# Top-level names of what a training checkpoint keeps beside the model (never part of the converted model).
NOT_MODEL = {"optim", "optimizer", "optimizers", "opt", "lr_scheduler", "scheduler", "loss", "loss_fn", "criterion",
             "ema", "model_ema", "ema_model", "metrics", "train_metrics", "val_metrics", "valid_metrics", "test_metrics",
             "teacher"}
_LIST = 12  # names listed in an error message; the error's details carry them all


@dataclass
class Checkpoint:
    """A state dict read from some layout, plus what the checkpoint says about itself."""

    state: dict[str, Any]  # name -> torch.Tensor
    layout: str  # "lightning", "ddp", "torch.compile", "state-dict", "safetensors-sharded", "deepspeed-zero3", "dcp", ...
    source: str  # the file or directory name, for messages
    info: dict[str, Any] = field(default_factory=dict)  # step, epoch, ranks, zero stage, versions, checks
    hparams: dict[str, Any] | None = None  # Lightning hyper_parameters
    config: dict[str, Any] | None = None  # a config.json found with the checkpoint
    config_dir: Path | None = None  # where that config.json (and tokenizer files) live
    digests: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the consolidated tensor's bytes
    # Streaming layouts (ZeRO, DCP): ``state`` holds meta tensors (names, shapes, dtypes, in order) and this
    # yields (name, tensor) in that order, each assembled as it is needed (``stream.write``).
    stream: Any = None


# --- reading pickles -----------------------------------------------------------
def safe_torch_load(path: Path, name: str, *, allow: dict[tuple[str, str], Any] | None = None) -> Any:
    """zoo's opcode walk first (nothing is executed), then ``torch.load(weights_only=True)``. ``allow`` maps
    extra (module, class) names a layout's pickles hold to inert stand-ins (``Stub`` subclasses)."""
    import torch

    from zoo.safety import check_pickle_weights, refuse_unsafe_pickle_env

    allow = allow or {}
    check_pickle_weights(path, name, allow=frozenset(allow))
    refuse_unsafe_pickle_env()
    with open(path, "rb") as f:
        is_zip = f.read(2) == b"PK"
    try:
        with torch.serialization.safe_globals(list(allow.values())):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure means corrupt or hostile input
        if "weights_only" in str(exc) or type(exc).__name__ == "UnpicklingError":
            raise errors.UnsafeModelError(
                f"refusing {name}: torch.load(weights_only=True) rejected it: {str(exc).splitlines()[0][:300]}",
                hint="save the state dict (model.state_dict()) or safetensors") from exc
        raise errors.InvalidModelError(f"cannot read {name}: {type(exc).__name__}: {str(exc)[:300]}",
                                       hint="the file is corrupt or not a checkpoint") from exc


def restricted_load(path: Path, name: str, allow: dict[tuple[str, str], Any]) -> Any:
    """A plain pickle that ``torch.load(weights_only=True)`` cannot read (protocol 4 frames: DCP's
    ``.metadata``): the opcode walk first, then Python's unpickler with ``find_class`` answering only
    ``allow`` (plus torch's dtypes and ``torch.Size``); any other global is refused, so nothing else runs."""
    import pickle

    import torch

    from zoo.safety import check_pickle_weights, refuse_unsafe_pickle_env

    check_pickle_weights(path, name, allow=frozenset(allow))
    refuse_unsafe_pickle_env()

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, attr: str) -> Any:
            if (module, attr) in allow:
                return allow[(module, attr)]
            if module == "torch" and (attr == "Size" or isinstance(getattr(torch, attr, None), torch.dtype)):
                return getattr(torch, attr)
            raise errors.UnsafeModelError(f"refusing {name}: its pickle names {module}.{attr}", hint=_PICKLE_HINT)

        def persistent_load(self, pid: Any) -> Any:
            raise errors.UnsafeModelError(f"refusing {name}: its pickle holds persistent ids", hint=_PICKLE_HINT)

    try:
        with open(path, "rb") as f:
            return Restricted(f).load()
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt bytes
        raise errors.InvalidModelError(f"cannot read {name}: {type(exc).__name__}: {str(exc)[:200]}",
                                       hint="the file is corrupt; copy the checkpoint again") from None


_PICKLE_HINT = "the checkpoint's metadata names classes a checkpoint never needs: it was tampered with"


class Stub:
    """An inert stand-in for a class a checkpoint's pickle names: it keeps the pickled state as plain
    attributes and runs no code of the original class (``torch.load(weights_only=True)`` builds it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # an enum's pickle calls its class with the value
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


def stub(module: str, qualname: str) -> type:
    """A ``Stub`` subclass that weights_only's allow-list matches as ``module.qualname``."""
    cls = type(qualname.rpartition(".")[2], (Stub,), {})
    cls.__module__, cls.__qualname__ = module, qualname
    return cls


def tensors_only(obj: Any, name: str) -> dict[str, Any]:
    import torch

    if not isinstance(obj, dict) or not obj:
        raise errors.InvalidModelError(f"{name} holds a {type(obj).__name__}, not a state dict",
                                       hint="save the weights with torch.save(model.state_dict()) or as safetensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise errors.InvalidModelError(f"{name}: entries {bad[:_LIST]} are not named tensors",
                                       hint="save the weights with torch.save(model.state_dict())")
    return obj


# --- key names -----------------------------------------------------------------
def normalise_keys(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop DDP's leading ``module.`` and torch.compile's ``_orig_mod.`` (anywhere); return the notes."""
    notes: list[str] = []
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        notes.append("ddp")
        while keys and all(k.startswith("module.") for k in keys):
            state = {k[len("module."):]: v for k, v in state.items()}
            keys = list(state)
    if any("_orig_mod." in k or k.startswith("_orig_mod") for k in keys):
        notes.append("torch.compile")
        state = {".".join(p for p in k.split(".") if p != "_orig_mod"): v for k, v in state.items()}
    return state, notes


def choose_prefix(keys: list[str], expected: set[str]) -> str:
    """The prefix under which the checkpoint holds the model (Lightning: the attribute the
    LightningModule keeps it in, e.g. ``model.``): the one whose stripped names match most."""
    candidates = {""}
    for k in keys:
        parts = k.split(".")
        for depth in (1, 2, 3):
            if len(parts) > depth:
                candidates.add(".".join(parts[:depth]) + ".")

    def score(prefix: str) -> tuple[int, int]:
        return len({k[len(prefix):] for k in keys if k.startswith(prefix)} & expected), -len(prefix)

    return max(sorted(candidates), key=score)


# --- the architecture ----------------------------------------------------------
@dataclass
class Arch:
    library: str  # "timm" | "transformers"
    name: str  # timm architecture or transformers class
    config: dict[str, Any] = field(default_factory=dict)  # a transformers config dict
    num_classes: int | None = None
    source: str = ""  # where the architecture came from, for the record
    side_dir: Path | None = None  # tokenizer / preprocessor files to carry along


def resolve_arch(spec: str | None, ckpt: Checkpoint, settings: Settings) -> Arch:
    if spec:
        return _arch_from_spec(spec, ckpt, "--arch", settings)
    if ckpt.config is not None:
        return _arch_from_config(ckpt.config, f"{ckpt.source}'s config.json", ckpt.config_dir)
    hp = ckpt.hparams or {}
    classes = next((hp[k] for k in HPARAM_CLASSES_KEYS if isinstance(hp.get(k), int)), None)
    for key in HPARAM_ARCH_KEYS:
        value = hp.get(key)
        if isinstance(value, str) and value:
            arch = _arch_from_spec(value, ckpt, f"hyper_parameters[{key!r}]", settings, guess=True)
            arch.num_classes = arch.num_classes if arch.num_classes is not None else classes
            return arch
    raise errors.UsageError(f"{ckpt.source} does not say which architecture its weights belong to "
                            f"({'hyper_parameters ' + str(sorted(hp)[:8]) if hp else 'no config.json, no hyper-parameters'})",
                            hint=ARCH_HINT)


def _arch_from_spec(spec: str, ckpt: Checkpoint, where: str, settings: Settings, guess: bool = False) -> Arch:
    kind, sep, rest = spec.partition(":")
    if sep and kind == "timm":
        return Arch("timm", rest, source=f"{where}={spec}")
    if sep and kind == "fastai":  # fastai:timm:NAME: vision_learner on a timm body with the standard head
        body_kind, _, body = rest.partition(":")
        if body_kind != "timm" or not body:
            raise errors.UsageError(f"{where}={spec}: zoo rebuilds fastai vision_learner models on timm bodies",
                                    hint="--arch fastai:timm:resnet18")
        return Arch("fastai", body, source=f"{where}={spec}")
    if sep and kind == "hf":
        return _arch_from_hub(rest, where, settings)
    path = Path(spec).expanduser()
    if not guess and (path.is_file() or spec.endswith(".json")):
        if not path.is_file():
            raise errors.NotFoundError(f"--arch {spec}: no such file", hint=ARCH_HINT)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.InvalidModelError(f"--arch {spec} is not a JSON config: {exc}", hint=ARCH_HINT) from None
        return _arch_from_config(config, str(path), path.parent)
    if guess:
        import timm

        if timm.is_model(spec.split(".")[0]):
            return Arch("timm", spec.split(".")[0], source=f"{where}={spec}")
        if spec.startswith("timm/") and timm.is_model(spec[5:].split(".")[0]):
            return Arch("timm", spec[5:].split(".")[0], source=f"{where}={spec}")
        if "/" in spec:
            return _arch_from_hub(spec, where, settings)
    raise errors.UsageError(f"{where}: {spec!r} names no architecture zoo can build", hint=ARCH_HINT)


def _arch_from_hub(repo: str, where: str, settings: Settings) -> Arch:
    """A transformers architecture named by a hub repo: its config.json only (never its weights or code)."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(repo, "config.json", cache_dir=str(settings.hf_hub_cache)))
        config = json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - offline, missing repo, bad JSON: all "cannot name it"
        raise errors.NotFoundError(f"{where}: cannot read config.json of {repo}: {str(exc)[:200]}",
                                   hint="pass --arch path/to/config.json instead") from None
    for name in SIDE_FILES:  # the tokenizer / image processor the architecture's repo publishes, when it does
        try:
            hf_hub_download(repo, name, cache_dir=str(settings.hf_hub_cache))
        except Exception:  # noqa: BLE001, S112 - most repos lack most of these
            continue
    return _arch_from_config(config, f"{where}=hf:{repo}", path.parent)


def _arch_from_config(config: Any, where: str, side_dir: Path | None) -> Arch:
    if not isinstance(config, dict):
        raise errors.InvalidModelError(f"{where} is not a JSON object", hint=ARCH_HINT)
    if config.get("auto_map") or config.get("custom_pipelines"):
        raise errors.UnsafeModelError(f"{where} needs custom code (auto_map); zoo never runs remote code",
                                      hint="use an architecture that ships with transformers or timm")
    if isinstance(config.get("architecture"), str):
        return Arch("timm", config["architecture"], num_classes=config.get("num_classes"), source=where)
    if isinstance(config.get("model_type"), str):
        archs = config.get("architectures") or []
        return Arch("transformers", archs[0] if archs else "AutoModel", config=config, source=where, side_dir=side_dir)
    raise errors.UnsupportedError(f"{where} names neither a timm architecture nor a transformers model_type",
                                  hint=ARCH_HINT)


def build_meta(arch: Arch) -> Any:
    """The architecture on torch's meta device (no memory for weights): its names and shapes."""
    import torch

    try:
        with torch.device("meta"):
            if arch.library == "fastai":
                from zoo.converters.loaders.fastai_models import build_vision_learner

                return build_vision_learner(arch.name, arch.config["widths"])
            if arch.library == "timm":
                import timm

                kwargs = {} if arch.num_classes is None else {"num_classes": arch.num_classes}
                return timm.create_model(arch.name, pretrained=False, **kwargs)
            import transformers

            config = transformers.AutoConfig.for_model(**arch.config)
            if arch.num_classes is not None and arch.name.endswith("ForSequenceClassification"):
                config.num_labels = arch.num_classes
            cls = getattr(transformers, arch.name, None) if arch.name.isidentifier() else None
            if cls is None or not hasattr(cls, "_from_config"):
                raise errors.UnsupportedError(f"transformers has no model class {arch.name!r}", hint=ARCH_HINT)
            arch.config = config.to_dict()
            return cls._from_config(config, attn_implementation="eager")
    except errors.ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unknown name or a bad config
        raise errors.UnsupportedError(f"cannot build {arch.library} architecture {arch.name!r}: {str(exc)[:300]}",
                                      hint=ARCH_HINT) from None


def match(ckpt: Checkpoint, arch: Arch) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's own state dict out of the checkpoint's, matched strictly: every key the architecture
    has, none it lacks, every shape equal; else exit 7 listing them. Returns (state, notes)."""
    state, notes = normalise_keys(ckpt.state)
    if arch.library == "fastai":
        from zoo.converters.loaders.fastai_models import head_widths

        arch.config = {"widths": head_widths(state)}
        if len(arch.config["widths"]) < 2:
            raise errors.InvalidModelError(f"{ckpt.source}: no fastai head (1.N.weight Linear layers) in the weights",
                                           hint="--arch fastai:timm:NAME is for learn.save() weights of a vision_learner")
        arch.num_classes = arch.config["widths"][-1]
    model = build_meta(arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = choose_prefix(list(state), set(expected))
    if arch.library == "timm" and arch.num_classes is None:  # the head's width from the checkpoint
        head = (model.pretrained_cfg or {}).get("classifier")
        weight = state.get(f"{prefix}{head}.weight") if isinstance(head, str) else None
        arch.num_classes = int(weight.shape[0]) if weight is not None else 0
        if arch.num_classes != getattr(model, "num_classes", None):
            model = build_meta(arch)
            expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if arch.library == "timm":
        arch.config = {"pretrained_cfg": dict(model.pretrained_cfg or {})}
    elif arch.library == "fastai":
        arch.config["pretrained_cfg"] = dict(model[0].model.pretrained_cfg or {})
    ours = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    outside = sorted(k for k in state if not k.startswith(prefix))
    # Beside the model a training checkpoint may hold optimizer state, EMA copies, losses and metrics; any
    # other weights outside the chosen prefix would be a model only half imported (a head kept apart).
    stray = [k for k in outside if k.split(".")[0] not in NOT_MODEL]
    if stray:
        unexpected_outside = stray
    else:
        unexpected_outside = []
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected)) + unexpected_outside
    mismatched = sorted(f"{k}: checkpoint {list(v.shape)} vs model {list(expected[k])}"
                        for k, v in ours.items() if k in expected and tuple(v.shape) != expected[k])
    if missing or unexpected or mismatched:
        parts = [f"{len(x)} {what} ({', '.join(x[:_LIST])}{', ...' if len(x) > _LIST else ''})"
                 for x, what in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                 (mismatched, "shape mismatches")) if x]
        raise errors.InvalidModelError(
            f"{ckpt.source}: the weights{' under ' + repr(prefix) if prefix else ''} do not fit "
            f"{arch.library} {arch.name} ({arch.source}): {'; '.join(parts)}",
            hint="name the architecture the checkpoint was trained with (--arch), with its number of classes "
                 "(hyper-parameters or config.json)",
            missing=missing, unexpected=unexpected, mismatched=mismatched)
    return ours, {"prefix": prefix, "normalised": notes, "outside_model": outside[:20],
                  "outside_model_count": len(outside)}


# --- the plain model directory -------------------------------------------------
def write_model_dir(dest: Path, state: dict[str, Any], arch: Arch, weights: bool = True) -> None:
    from safetensors.torch import save_file

    dest.mkdir(parents=True)
    if arch.library in ("timm", "fastai"):
        config: dict[str, Any] = {"architecture": arch.name, "num_classes": arch.num_classes or 0}
        if arch.library == "fastai":
            config["fastai_head"] = {"widths": arch.config["widths"]}
        cfg = {k: v for k, v in (arch.config.get("pretrained_cfg") or {}).items() if k in TIMM_CFG_KEYS and _jsonable(v)}
        config["pretrained_cfg"] = {**cfg, "num_classes": arch.num_classes or 0}
    else:
        config = dict(arch.config)
        config["architectures"] = [arch.name]
        for name in SIDE_FILES:
            if arch.side_dir is not None and (arch.side_dir / name).is_file() and not (arch.side_dir / name).is_symlink():
                shutil.copyfile(arch.side_dir / name, dest / name)
    (dest / "config.json").write_text(json.dumps(config, indent=1, default=list), encoding="utf-8")
    if not weights:
        return
    seen: set[int] = set()
    out = {}
    for k in sorted(state):  # safetensors refuses shared storage (tied weights): those are copied
        t = state[k].detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        out[k] = t.clone().contiguous() if ptr in seen else t.contiguous()
        if ptr != -1:
            seen.add(ptr)
    save_file(out, str(dest / "model.safetensors"))


def tensor_sha256(t: Any) -> str:
    import hashlib

    from zoo.registry.checkpoints.stream import as_bytes

    return hashlib.sha256(as_bytes(t)).hexdigest()


def _check_written(path: Path, digests: dict[str, str], prefix: str) -> None:
    """The written weights, read back, tensor by tensor against the consolidation's digests."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            want = digests.get(prefix + name)
            if want is not None and tensor_sha256(f.get_tensor(name)) != want:
                raise errors.IntegrityError(f"{name} changed between consolidation and writing (sha256 differs)",
                                            hint="the disk or memory is faulty: run the import again")


def _write_streaming(ckpt: Checkpoint, dest: Path, state: dict[str, Any], arch: Arch, prefix: str) -> None:
    """config.json as ever, then the weights written tensor by tensor as the layout assembles them."""
    from zoo.registry.checkpoints import stream

    normalised, _ = normalise_keys({k: k for k in ckpt.state})
    rename = {src: k[len(prefix):] for k, src in normalised.items() if k.startswith(prefix) and k[len(prefix):] in state}
    write_model_dir(dest, {}, arch, weights=False)
    # write() reads every tensor back from the file as soon as it is written and compares it with the assembled
    # bytes (whose sha256 it records): the file is checked tensor by tensor against the shards in one pass
    digests = stream.write(dest / "model.safetensors", ckpt.state, ckpt.stream(), rename)
    ckpt.digests = digests
    if isinstance(ckpt.info.get("consolidated"), dict):
        ckpt.info["consolidated"]["sha256"] = digest_of(digests)


def digest_of(digests: dict[str, str]) -> str:
    """One digest over every tensor's (name, sha256)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(f"{name}\0{digests[name]}\n".encode())
    return h.hexdigest()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def prepare(ckpt: Checkpoint, dest: Path, settings: Settings, arch_spec: str | None) -> dict[str, Any]:
    """Match the checkpoint to its architecture and write it into ``dest`` as a plain model directory;
    return what the imported record notes about it."""
    arch = resolve_arch(arch_spec, ckpt, settings)
    state, notes = match(ckpt, arch)
    if ckpt.stream is not None:
        _write_streaming(ckpt, dest, state, arch, notes["prefix"])
    else:
        write_model_dir(dest, state, arch)
    if ckpt.digests and ckpt.stream is None:
        _check_written(dest / "model.safetensors", ckpt.digests, notes["prefix"])
    layout = "+".join([ckpt.layout, *[n for n in notes.pop("normalised") if n not in ckpt.layout]])
    return {"layout": layout, "source": ckpt.source, "architecture": f"{arch.library}:{arch.name}",
            "architecture_from": arch.source, "tensors": len(state), **notes, **ckpt.info}
