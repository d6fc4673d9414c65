"""Models the user imports from a local directory (``zoo import DIR --name N``).

The directory must look like a Hugging Face or timm model repo: a
``config.json`` plus weights. Files are copied into ``ZOO_HOME/local/N/<rev>/``
where ``<rev>`` is the digest of the imported files, so re-importing changed
files makes a new revision and the old artifacts stay valid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

from zoo import errors
from zoo.hashing import sha256_file, sha256_json
from zoo.registry.hf_source import choose_files, describe
from zoo.registry.index import Registry
from zoo.registry.records import FileInfo, ModelRecord
from zoo.settings import Settings

# How to write a directory zoo imports, from the libraries a user has (README: "Bring your own model").
SAVE_HINT = ("save the model first: transformers: model.save_pretrained(DIR) (and tokenizer.save_pretrained(DIR)); "
             "timm: timm.models.save_for_hf(model, DIR, safe_serialization=True); a state dict: "
             "safetensors.torch.save_file(state_dict, DIR/model.safetensors) plus a config.json of "
             '{"architecture": "resnet18", "num_classes": 1000}; then zoo import DIR --name N')
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def import_path(path: Path, name: str, settings: Settings, arch: str | None = None) -> ModelRecord:
    """Import a model directory, or an archive of one (extracted safely into staging first), or a
    training checkpoint (``zoo.registry.checkpoints``: rewritten as a model directory first)."""
    from zoo.registry import checkpoints
    from zoo.registry.checkpoints import reference

    path = path.expanduser()
    if arch is not None and arch.startswith("flax:"):
        return import_flax(path, name, settings, arch)
    layout = checkpoints.detect(path)
    if layout is not None or arch is not None:
        _check_name(name)
        staging = settings.home / "tmp" / f"{os.getpid()}-checkpoint-{uuid.uuid4().hex}"
        try:
            notes = checkpoints.prepare(path, staging, settings, arch, layout or ("sharded" if path.is_dir() else "single"))
            record, files, weights, fmt = describe_directory(staging, name)
            recorded = reference.locate(path)
            if recorded is not None:  # outputs recorded at training time: the rebuilt model must reproduce them
                notes["reference"] = reference.check_torch(recorded, record, staging, weights, fmt)
            record.extra["checkpoint"] = notes
            return store_files(staging, files, record, settings)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if path.is_file():
        from zoo.archives import extract_archive

        _check_name(name)
        staging = settings.home / "tmp" / f"{os.getpid()}-extract-{uuid.uuid4().hex}"
        try:
            root = extract_archive(path, staging, settings)
            return import_directory(root, name, settings)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return import_directory(path, name, settings)


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise errors.InvalidNameError(f"invalid local model name {name!r}",
                                      hint="use letters, digits, '.', '_' and '-' (no '/')")


def import_directory(directory: Path, name: str, settings: Settings) -> ModelRecord:
    """Check the directory's files (no links, no remote code, weights that are
    data and not programs) and copy them into the store as ``local:NAME``."""
    record, files, _weights, _fmt = describe_directory(directory, name)
    return store_files(directory, files, record, settings)


def describe_directory(directory: Path, name: str) -> tuple[ModelRecord, list[str], list[str], str]:
    """The record of a model directory, checked (no links, no remote code, weights that are data and not
    programs), with (files to store, weight files, their format); nothing is stored yet."""
    from zoo.safety import check_weights

    _check_name(name)
    directory = directory.expanduser()
    if not directory.is_dir():
        raise errors.NotFoundError(f"{directory} is not a directory",
                                   hint="pass the directory (or a .tar/.tar.gz/.zip archive) holding config.json and the weights")
    available = _safe_listing(directory)
    try:
        files, weights, fmt = choose_files(available)
    except errors.InvalidModelError as exc:  # its hint speaks of hub repos: say what this directory lacks
        what = "is empty" if not available else f"holds no weights zoo can load ({', '.join(sorted(available)[:5])})"
        raise errors.InvalidModelError(
            f"{directory} {what}: zoo imports a config.json plus model.safetensors (or pytorch_model.bin, or a "
            "Keras 3 model.keras)", hint=SAVE_HINT) from exc
    base = ModelRecord(id=f"local/{name}", source="local", name=name)
    record = describe(base, directory, files)  # raises on a missing/invalid config.json or remote code
    check_weights(directory, weights)
    return record, files, weights, fmt


def import_flax(path: Path, name: str, settings: Settings, arch: str) -> ModelRecord:
    """A Flax checkpoint (msgpack or orbax) of the module ``--arch flax:package.module:Class`` names, checked
    against that module and stored as ``flax_config.json`` + ``params.msgpack`` (``checkpoints.flax``)."""
    from zoo.registry.checkpoints import flax

    _check_name(name)
    staging = settings.home / "tmp" / f"{os.getpid()}-flax-{uuid.uuid4().hex}"
    try:
        notes = flax.prepare(path, staging, settings, arch)
        config = json.loads((staging / "flax_config.json").read_text())
        record = ModelRecord(id=f"local/{name}", source="local", name=name, library="flax",
                             arch=arch.removeprefix("flax:"), input_spec=config["inputs"],
                             extra={"checkpoint": notes, "outputs": config["outputs"]})
        return store_files(staging, ["flax_config.json", "params.msgpack"], record, settings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def store_files(directory: Path, files: list[str], record: ModelRecord, settings: Settings) -> ModelRecord:
    """Copy ``files`` into ``ZOO_HOME/local/NAME/<revision>`` (the digest of the files) and index the record."""
    name = record.name
    infos = [FileInfo(f, sha256_file(directory / f), (directory / f).stat().st_size) for f in files]
    revision = sha256_json([i.__dict__ for i in infos])[:40]
    record.revision = revision
    dest = settings.home / "local" / name / revision
    if not dest.is_dir():
        tmp = settings.home / "tmp" / f"{os.getpid()}-import-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            for f in files:
                (tmp / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(directory / f, tmp / f)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    registry = Registry(settings)
    registry.upsert(record)
    registry.add_revision(record.id, revision, infos)  # the record carries its current revision
    shutil.rmtree(settings.home / "pulls", ignore_errors=True)  # a new local name can change how names resolve
    record.files = infos
    return record


def _safe_listing(directory: Path) -> list[str]:
    """Regular files inside ``directory``; links and escapes are refused."""
    root = directory.resolve()
    out = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise errors.UnsafeModelError(f"refusing {rel}: symbolic links are not imported",
                                          hint="copy the real file into the directory")
        if path.is_file():
            if not path.resolve().is_relative_to(root):
                raise errors.UnsafeModelError(f"refusing {rel}: it resolves outside {directory}")
            out.append(rel)
    return out
