"""Hugging Face repos as a registry source: fetch through huggingface_hub (its
cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) and describe a repo
from its ``config.json``.

Which files are fetched is decided here, in one place: safetensors weights
first, pickle weights (``pytorch_model.bin``) only when a repo has nothing else,
and never code (``*.py``): zoo does not run remote code.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from zoo import errors
from zoo.registry.download import is_connection_error, translate_hub_error
from zoo.registry.keras_repo import describe_keras, keras_files
from zoo.registry.records import (
    FileInfo,
    ModelRecord,
    image_input_spec,
    text_input_spec,
)
from zoo.settings import Settings

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
METADATA_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "source.spm",  # Marian (Helsinki-NLP/opus-mt-*): one sentencepiece model per side, ids from vocab.json
    "target.spm",
    "target_vocab.json",  # Marian with separate vocabularies
    "generation_config.json",
    "modules.json",  # sentence-transformers: the pooling and normalisation go into the graph
    "1_Pooling/config.json",
)
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CARD = "README.md"  # the model card: fetched beside the files, never one of them


@dataclass
class Snapshot:
    """Files of one repo revision, present on local disk."""

    repo_id: str
    commit: str
    root: Path  # snapshot directory (or any directory holding the files)
    files: list[str]  # chosen repo paths, all present under root
    weights: list[str]
    weights_format: str  # "safetensors" | "pickle"
    license: str | None = None
    notes: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # sha256 of the files downloaded (and verified) just now


def repo_cache_dir(hub_cache: Path, repo_id: str) -> Path:
    return hub_cache / ("models--" + repo_id.replace("/", "--"))


def validate_repo_path(path: str) -> str:
    """Refuse repo file names that could escape a directory."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise errors.UnsafeModelError(f"refusing repo file name {path!r}: it points outside the repository")
    return path


def choose_files(available: list[str], *, repo_filename: str | None = None) -> tuple[list[str], list[str], str]:
    """Pick (files, weights, weights_format) from a repo's file list."""
    names = [validate_repo_path(n) for n in available]
    present = set(names)
    meta = [n for n in METADATA_FILES if n in present]
    if repo_filename:
        weights = [repo_filename] if repo_filename in present else []
    elif "model.safetensors" in present:
        weights = ["model.safetensors"]
    elif "model.safetensors.index.json" in present:
        weights = ["model.safetensors.index.json"] + sorted(n for n in names if re.match(r"^model-\d+-of-\d+\.safetensors$", n))
    elif (keras := keras_files(present)) is not None:  # a Keras 3 model: weights read by keras, no pickle
        return sorted(keras[0]), keras[1], "keras"
    elif "pytorch_model.bin" in present:
        weights = ["pytorch_model.bin"]
    elif "pytorch_model.bin.index.json" in present:
        weights = ["pytorch_model.bin.index.json"] + sorted(n for n in names if re.match(r"^pytorch_model-\d+-of-\d+\.bin$", n))
    else:  # a lone top-level file: safetensors first, then a tensor-only pickle (.pt, .pth, .ckpt, .bin)
        from zoo.safety import PICKLE_SUFFIXES

        top = sorted(n for n in names if "/" not in n)
        weights = ([n for n in top if n.endswith(".safetensors")] or [n for n in top if n.endswith(PICKLE_SUFFIXES)])[:1]
    if not weights and "flax_model.msgpack" in present:
        raise errors.UnsupportedError(
            "Flax-only repo: it holds flax_model.msgpack and no PyTorch weights, and transformers 5 (which zoo "
            "uses) no longer reads Flax weights",
            hint="convert with transformers<5 (AutoModel.from_pretrained(REPO, from_flax=True).save_pretrained(DIR)), "
                 "then zoo import DIR --name N; or import the Flax model itself: zoo import CKPT --name N "
                 "--arch flax:package.module:Class (README, 'Bring your own model')")
    if not weights:
        raise errors.InvalidModelError(
            "the repo has no weights zoo can load (model.safetensors, pytorch_model.bin, or a Keras 3 model.keras "
            "or config.json + model.weights.h5)",
            hint="publish safetensors weights, or import a directory with `zoo import DIR --name N`",
        )
    fmt = "safetensors" if weights[-1].endswith(".safetensors") else "pickle"
    return sorted(set(meta + weights)), weights, fmt


def offline_error(repo_id: str, revision: str | None, settings: Settings) -> errors.OfflineError:
    return errors.OfflineError(
        f"{repo_id}{'@' + revision if revision else ''} is not in the local Hugging Face cache ({settings.hf_hub_cache}) and HF_HUB_OFFLINE is set",
        hint="unset HF_HUB_OFFLINE, or point HF_ENDPOINT at a reachable hub or mirror, or bring the files in with `zoo import DIR --name N`",
        model=repo_id,
    )


def cached_commit(repo_id: str, revision: str | None, hub_cache: Path) -> str | None:
    """The commit ``revision`` (default main) names in the local cache: a sha as is, a ref from ``refs/``."""
    revision = revision or "main"
    if COMMIT_RE.match(revision):
        return revision
    try:
        return (repo_cache_dir(hub_cache, repo_id) / "refs" / revision).read_text().strip()
    except OSError:
        return None


def cached_snapshot(repo_id: str, revision: str | None, settings: Settings, repo_filename: str | None = None) -> Snapshot | None:
    """The snapshot of ``repo_id@revision`` in the local cache, or None."""
    commit = cached_commit(repo_id, revision, settings.hf_hub_cache)
    if commit is None:
        return None
    root = repo_cache_dir(settings.hf_hub_cache, repo_id) / "snapshots" / commit
    if not root.is_dir():
        return None
    available = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    try:
        files, weights, fmt = choose_files(available, repo_filename=repo_filename)
    except errors.InvalidModelError:
        return None
    return Snapshot(repo_id, commit, root, files, weights, fmt)


def fetch_snapshot(
    repo_id: str,
    revision: str | None,
    settings: Settings,
    *,
    repo_filename: str | None = None,
    progress: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> Snapshot:
    """Resolve ``repo_id@revision`` to a commit and make its files local.

    Online: one ``model_info`` call, then ``hf_hub_download`` per file at the
    commit sha (no request at all for files already in the cache). Offline, or
    when the hub cannot be reached: the local cache alone.
    """
    if settings.hf_offline:
        snap = cached_snapshot(repo_id, revision, settings, repo_filename)
        if snap is None:
            raise offline_error(repo_id, revision, settings)
        return snap
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    from zoo.registry.download import download_file, expected_digests

    try:
        info = HfApi(endpoint=settings.hf_endpoint, token=settings.hf_token).model_info(
            repo_id, revision=revision, files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - translated below
        if is_connection_error(exc):
            snap = cached_snapshot(repo_id, revision, settings, repo_filename)
            if snap is not None:
                if on_note:
                    on_note(f"hub unreachable ({type(exc).__name__}); using the cached {repo_id}@{snap.commit[:12]}")
                return snap
        raise translate_hub_error(exc, repo_id, revision) from exc
    commit = info.sha
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        raise errors.NetworkError(f"the hub answered for {repo_id} without a valid commit sha ({commit!r})",
                                  hint="check HF_ENDPOINT", model=repo_id)
    available = [s.rfilename for s in (info.siblings or [])]
    files, weights, fmt = choose_files(available, repo_filename=repo_filename)
    expected = expected_digests(info)
    (enable_progress_bars if progress else disable_progress_bars)()
    root = repo_cache_dir(settings.hf_hub_cache, repo_id) / "snapshots" / commit
    digests = {}
    for name in files:
        if (root / name).is_file():  # fetched (and checked) before; checked again before use
            continue
        _path, digests[name] = download_file(repo_id, name, commit, settings, expected.get(name))
    _fetch_card(repo_id, commit, root, available, expected, settings)
    _record_ref(settings.hf_hub_cache, repo_id, revision or "main", commit)
    # A repo the hub calls private or gated (or does not say, while a token was sent) is served by
    # zoo's hub mirror only to callers with a token (zoo.service.mirror).
    private, gated = getattr(info, "private", None), getattr(info, "gated", None)
    record_access(settings.hf_hub_cache, repo_id, bool(private) or bool(gated)
                  or (settings.hf_token is not None and (private is None or gated is None)))
    return Snapshot(repo_id, commit, root, files, weights, fmt, license=_license_of(info), digests=digests)


def _fetch_card(repo_id: str, commit: str, root: Path, available: list[str], expected: dict[str, Any],
                settings: Settings) -> None:
    """Bring the model card (README.md) along for ``zoo serve``'s model page, best effort: it is text for
    people, not one of the model's files (no part of the cache key), and a pull never fails for it."""
    from zoo.registry.download import download_file

    if CARD not in available or (root / CARD).is_file():
        return
    try:
        download_file(repo_id, CARD, commit, settings, expected.get(CARD))
    except errors.ZooError:
        pass


def _record_ref(hub_cache: Path, repo_id: str, revision: str, commit: str) -> None:
    """Write ``refs/<revision>`` as huggingface_hub does when it resolves a ref,
    so offline runs (zoo's, timm's, transformers') find this snapshot."""
    if COMMIT_RE.match(revision):
        return
    ref = repo_cache_dir(hub_cache, repo_id) / "refs" / revision
    if ref.is_file() and ref.read_text().strip() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


ACCESS_FILE = "zoo-access.json"  # beside the cache's blobs/ and snapshots/: huggingface_hub ignores it


def record_access(hub_cache: Path, repo_id: str, restricted: bool) -> None:
    """Remember whether the hub restricts ``repo_id`` (private or gated), as of the last fetch."""
    path = repo_cache_dir(hub_cache, repo_id) / ACCESS_FILE
    tmp = path.with_name(f".{ACCESS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"restricted": restricted}))
    os.replace(tmp, path)


def repo_restricted(hub_cache: Path, repo_id: str) -> bool | None:
    """Whether the last fetch found ``repo_id`` private or gated; None when zoo never recorded it."""
    try:
        return bool(json.loads((repo_cache_dir(hub_cache, repo_id) / ACCESS_FILE).read_text()).get("restricted", True))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: fail closed


def _license_of(info: Any) -> str | None:
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
    if card is not None:
        lic = card.get("license") if hasattr(card, "get") else getattr(card, "license", None)
        if lic:
            return str(lic)
    for tag in getattr(info, "tags", None) or []:
        if tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


def read_json(root: Path, name: str) -> dict[str, Any] | None:
    path = root / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidModelError(f"{name} is not valid JSON: {exc}", hint="re-upload or fix the file") from exc


def describe(base: ModelRecord, root: Path, files: list[str], task: str | None = None) -> ModelRecord:
    """Complete ``base`` (id, source, repo) from the repo's own config files (``task``: the user's ``--task``)."""
    from zoo.safety import check_remote_code

    check_remote_code(root, files, base.id)
    keras = keras_files(set(files))
    if keras is not None:
        return describe_keras(base, root, keras[1])
    config = read_json(root, "config.json")
    if config is None:
        raise errors.InvalidModelError(
            f"{base.id} has no config.json, so zoo cannot tell what architecture to build",
            hint="add the config.json that save_pretrained / timm's push_to_hf_hub writes",
            model=base.id,
        )
    if "architecture" in config:  # timm's hub format
        return _describe_timm(base, config)
    if "model_type" in config or "architectures" in config:
        return _describe_transformers(base, config, read_json(root, "preprocessor_config.json"), files, root, task)
    raise errors.UnsupportedError(
        f"{base.id}: config.json names neither a timm architecture nor a transformers model_type",
        hint="zoo builds timm and transformers models",
        model=base.id,
    )


def _describe_timm(base: ModelRecord, config: dict[str, Any]) -> ModelRecord:
    from zoo.registry.timm_source import record_from_pretrained_cfg
    from zoo.safety import check_timm_model_args

    check_timm_model_args(config.get("model_args"), f"{base.id}'s config.json")

    cfg = dict(config.get("pretrained_cfg") or {})
    cfg["architecture"] = config["architecture"]
    cfg.setdefault("num_classes", config.get("num_classes"))
    rec = record_from_pretrained_cfg(cfg, is_default=False)
    rec.id, rec.source, rec.name, rec.repo_id = base.id, base.source, base.name, base.repo_id
    rec.license = base.license or rec.license
    rec.extra["timm_config"] = {k: v for k, v in config.items() if k != "pretrained_cfg"}
    if config.get("label_names"):
        rec.labels = list(config["label_names"])
    return rec


_TOKENIZER_FILES = ("tokenizer", "vocab", "merges", "special_tokens", "spiece", "added_tokens", "sentencepiece")


def _describe_transformers(base: ModelRecord, config: dict[str, Any], preproc: dict[str, Any] | None, files: list[str],
                           root: Path | None = None, override: str | None = None) -> ModelRecord:
    from zoo.converters.tasks import detect_task, io_contract

    archs = config.get("architectures") or []
    arch = archs[0] if archs else None
    card = None
    if root is not None and (root / CARD).is_file() and (root / CARD).stat().st_size < 1_000_000:
        card = (root / CARD).read_text(encoding="utf-8", errors="replace")
    modules = read_json(root, "modules.json") if root is not None and "modules.json" in files else None
    task, found_in = detect_task(base.id, arch, override=override, card=card,
                                 modules=modules if isinstance(modules, list) else None)
    rec = ModelRecord(id=base.id, source=base.source, name=base.name, repo_id=base.repo_id, library="transformers",
                      arch=arch, task=task, license=base.license,
                      extra={"model_type": config.get("model_type"), "task_from": found_in})
    generation = read_json(root, "generation_config.json") if root is not None and "generation_config.json" in files else None
    if io := io_contract(task, config, generation if isinstance(generation, dict) else None):
        rec.extra["io"] = io
    if task == "sentence-similarity" and root is not None:
        rec.extra["sentence_transformers"] = {"modules": modules, "pooling": read_json(root, "1_Pooling/config.json")}
    id2label = config.get("id2label") or {}
    if task in ("text-classification", "image-classification", "token-classification", "audio-classification") and id2label:
        rec.labels = [id2label.get(str(i), id2label.get(i, str(i))) for i in range(len(id2label))]
        rec.num_classes = len(id2label)
    is_vision = preproc is not None or "image_size" in config or task == "image-classification"
    if (rec.extra.get("io") or {}).get("files"):  # an encoder-decoder: the record describes decoder.onnx
        from zoo.converters.tasks import seq2seq

        rec.input_spec = seq2seq.input_spec(rec.extra["io"])
        rec.extra["vocab_size"] = config.get("vocab_size")
        rec.preprocessing = {"tokenizer": [f for f in files if f.startswith(_TOKENIZER_FILES)]}
        rec.preprocessing.update({k: (preproc or {})[k] for k in ("feature_size", "sampling_rate", "chunk_length",
                                                                  "n_samples", "nb_max_frames") if k in (preproc or {})})
    elif task in ("automatic-speech-recognition", "audio-classification"):
        names = ["input_values"] + (["attention_mask"] if (preproc or {}).get("return_attention_mask") else [])
        rec.input_spec = [{"name": n, "shape": ["batch", "samples"], "dtype": "float32" if n == "input_values" else "int64",
                           "layout": "NT"} for n in names]
        rec.preprocessing = {k: (preproc or {})[k] for k in ("sampling_rate", "do_normalize", "feature_size",
                                                              "padding_value", "return_attention_mask") if k in (preproc or {})}
        rec.extra["vocab_size"] = config.get("vocab_size")
        vocab = read_json(root, "vocab.json") if root is not None and "vocab.json" in files \
            and task == "automatic-speech-recognition" else None
        if isinstance(vocab, dict) and all(isinstance(v, int) for v in vocab.values()):
            rec.labels = [k for k, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    elif task == "zero-shot-image-classification":
        from zoo.converters.tasks import vision

        rec.input_spec = vision.input_spec(config)
        rec.preprocessing = {k: preproc[k] for k in ("image_mean", "image_std", "size", "crop_size") if k in (preproc or {})}
        rec.preprocessing["tokenizer"] = [f for f in files if f.startswith(("tokenizer", "vocab", "merges", "special_tokens"))]
        text = config.get("text_config") or {}
        rec.extra["vocab_size"] = text.get("vocab_size") or config.get("vocab_size")
        # the text tower's position table bounds the prompts: the sequence axis' bound in the jax export
        rec.preprocessing["max_length"] = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    elif task == "object-detection":
        from zoo.converters.tasks import vision

        rec.input_spec = vision.detection_input_spec(config)
        rec.preprocessing = {k: preproc[k] for k in ("image_mean", "image_std", "size") if k in (preproc or {})}
        if id2label:
            rec.labels = [id2label.get(str(i), id2label.get(i, str(i))) for i in range(len(id2label))]
            rec.num_classes = len(id2label)
    elif task == "depth-estimation":
        from zoo.converters.tasks import depth

        rec.input_spec = depth.input_spec(config, preproc)
        rec.preprocessing = {k: preproc[k] for k in ("image_mean", "image_std", "size", "keep_aspect_ratio",
                                                     "ensure_multiple_of") if k in (preproc or {})}
    elif is_vision:
        # a config without image_size (ResNet, RegNet, ...): the size its image processor feeds, else 224
        size = config.get("image_size") or _processor_side(preproc) or 224
        channels = config.get("num_channels", 3)
        rec.input_spec = image_input_spec((channels, size, size), name="pixel_values")
        if preproc:
            rec.preprocessing = {k: preproc[k] for k in ("image_mean", "image_std", "size", "resample", "rescale_factor", "do_resize", "do_normalize", "crop_size") if k in preproc}
    else:
        has_types = task != "text-generation" and (config.get("type_vocab_size", 0) > 1 or config.get("model_type") == "bert")
        names = list(TEXT_INPUTS if has_types else TEXT_INPUTS[:2])
        rec.input_spec = text_input_spec(names)
        if task == "multiple-choice":  # [batch, choices, sequence]: each choice paired with the context
            rec.input_spec = [{**spec, "shape": ["batch", "choices", "sequence"], "layout": "NCS"} for spec in rec.input_spec]
        rec.preprocessing = {"tokenizer": [f for f in files if f.startswith(_TOKENIZER_FILES)],
                             "max_length": config.get("max_position_embeddings") or config.get("n_positions")}
        rec.extra["vocab_size"] = config.get("vocab_size")
        if task == "text-generation":
            cache = rec.extra["io"]["cache"]
            rec.input_spec += [{"name": n, "shape": ["batch", cache["num_key_value_heads"], "past_sequence", cache["head_dim"]],
                                "dtype": "float32", "layout": "BHSD"} for n in rec.extra["io"]["inputs"][2:]]
    return rec


def _processor_side(preproc: dict[str, Any] | None) -> int | None:
    """The square side an image processor's config resizes or crops to (crop_size when it crops)."""
    pre = preproc or {}
    for key in (("crop_size",) if pre.get("do_center_crop") else ()) + ("size",):
        value = pre.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, dict) and value.get("height") and value.get("height") == value.get("width"):
            return int(value["height"])
    return None


def file_infos(root: Path, files: list[str], known: dict[str, str] | None = None) -> list[FileInfo]:
    """sha256 and size of each file; files not in ``known`` are hashed and checked
    against their blob names (LFS sha256 or git blob id)."""
    from zoo.registry.download import verify_files

    known = dict(known or {})
    known.update(verify_files(root, [f for f in files if f not in known], {}))
    return [FileInfo(name, known[name], (root / name).stat().st_size) for name in files]
