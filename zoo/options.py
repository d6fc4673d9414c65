"""The options of a conversion, defined once.

``Options`` is the one definition: ``zoo pull`` and ``zoo convert`` take their flags from it
(``add_arguments``), the HTTP API builds its request schema from it with the same bounds
(``zoo.api.schemas.JobOptions``), jobs are keyed by ``job_key_fields`` and artifacts by ``canonical``.
Each field says in its metadata how it is shown, bounded and keyed; adding an option means adding a
field here and reading it where it is used, nothing else.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from zoo import errors
from zoo.converters.graph import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

DEFAULT_FORMAT = "onnx"
EXPORTERS = ("auto", "dynamo", "torchscript")


def option(default: Any, *, help: str, flags: tuple[str, ...] = (), ge: float | None = None, le: float | None = None,
           choices: tuple[str, ...] | None = None, key: str = "artifact", metavar: str | None = None,
           content: str | None = None, api: bool = True) -> Any:
    """A field of ``Options``. ``key``: "artifact" (part of the artifact cache key: it changes the bytes or
    the check), "job" (only tells identical requests apart: two jobs that differ in it are different
    requests, yet produce the same artifact), or "none". ``content``: "file" or "dir" for a local path
    whose *bytes* are keyed (its sha256, never the path). ``api``: False for options the HTTP API cannot
    take (a path on the client's machine means nothing to the server)."""
    return field(default=default, metadata={"help": help, "flags": flags, "ge": ge, "le": le, "choices": choices,
                                            "key": key, "metavar": metavar, "content": content, "api": api})


@dataclass(frozen=True)
class Options:
    format: str = option(DEFAULT_FORMAT, flags=("--format", "-f"), metavar="FORMAT",
                         help="target format: onnx (default), onnx-fp16, onnx-int8, onnx-int4 (4-bit weights, "
                              "decoders), onnx-opt (onnxruntime-optimised), "
                              "pt2 (torch.export; also: torch, pytorch), tf (SavedModel directory), tflite (litert-torch, "
                              "then onnx2tf), tflite-int8, tflite-fp16, jax (jax.export), keras (Keras sources)")
    opset: int | None = option(None, ge=MIN_OPSET, le=MAX_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    atol: float | None = option(None, ge=0, help="absolute parity tolerance (default: per dtype, scaled by each "
                                                 "output's magnitude)")
    rtol: float | None = option(None, ge=0, help="relative parity tolerance")
    exporter: str = option("auto", choices=EXPORTERS,
                           help="torch.onnx exporter (default auto: TorchScript, then dynamo when TorchScript fails "
                                "or its result fails parity)")
    allow_mismatch: bool = option(False, key="job",
                                  help="when parity fails, still hand back the (unverified) artifact and exit 0")
    input: tuple[str, ...] = option((), metavar="NAME:SHAPE[:DTYPE[:LOW..HIGH|V1,V2]]",
                                    help="an input's shape, dtype and values for parity (repeatable), e.g. "
                                         "images:1x3x640x640:float32:0..1 or sr::int64:16000 (default: inferred)")
    inputs: str | None = option(None, metavar="FILE.npz", content="file", api=False,
                                help="real parity inputs: a .npz with one array per input (keys NAME, or SET/NAME "
                                     "for several sets); replaces the inputs zoo would make up")
    samples: str | None = option(None, metavar="DIR", content="dir", api=False,
                                 help="a directory of real samples (images, .wav audio, .txt lines) fed through the "
                                      "model's preprocessing for parity, instead of zoo's own")

    task: str | None = option(None, metavar="TASK",
                              help="the Hugging Face task to export (default: from the repo's config.json, modules.json "
                                   "or model card): text-generation, fill-mask, token-classification, "
                                   "question-answering, multiple-choice, sentence-similarity, automatic-speech-recognition "
                                   "(CTC), text-classification, feature-extraction, image-classification (docs/tasks.md)")
    external_data_above: int | None = option(
        None, ge=0, metavar="BYTES", flags=("--external-data-above",),
        help="write ONNX weights as external data (model.onnx + model.onnx.data) when they exceed BYTES "
             "(default 1800000000: protobuf's 2 GiB limit; 0: always)")

    def __post_init__(self) -> None:  # what users type for a format (torch, pytorch) -> what zoo means (pt2)
        from zoo.converters.graph import canonical_format
        from zoo.converters.tasks import canonical_task

        object.__setattr__(self, "format", canonical_format(self.format))
        object.__setattr__(self, "task", canonical_task(self.task))

    # --- validation and keys --------------------------------------------------------------------------
    def validated(self) -> Options:
        """These options, checked against every field's bounds and choices (a UsageError otherwise)."""
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            flag = _flag(f)
            if value is None:
                continue
            if f.type in ("bool",) and not isinstance(value, bool):
                raise errors.UsageError(f"{flag} takes true or false, not {value!r}")
            if f.type.startswith("tuple") and not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
                raise errors.UsageError(f"{flag} takes a list of strings, not {value!r}")
            if meta["content"] and not isinstance(value, str):
                raise errors.UsageError(f"{flag} takes a local path, not {value!r}",
                                        hint="the cache key holds only the file's sha256; give the path again")
            if isinstance(value, float) and not math.isfinite(value):
                raise errors.UsageError(f"{flag} must be a finite number, not {value}")
            if meta["choices"] and value not in meta["choices"]:
                raise errors.UsageError(f"{flag} {value!r} is not one of {', '.join(meta['choices'])}",
                                        hint=f"pass {flag} {' | '.join(meta['choices'])}")
            low, high = meta["ge"], meta["le"]
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"{low}..{high}" if high is not None else f">= {low}"
                default = f" (default {DEFAULT_OPSET})" if f.name == "opset" else ""
                raise errors.UsageError(f"{flag} {value} is outside the supported range {bounds}",
                                        hint=f"pass {flag} within {bounds}{default}")
        self.input_request()  # the specs parse and the files exist
        if self.task is not None:
            from zoo.converters.tasks import check_task

            check_task(self.task)  # a usage error, or exit 5 for a task zoo does not convert yet
        return self

    def input_request(self) -> Any:
        """What these options say about parity inputs (``zoo.converters.parity.specs.InputRequest``)."""
        from zoo.converters.parity.specs import input_request

        return input_request(self.input, self.inputs, self.samples)

    def canonical(self) -> dict[str, Any]:
        """The fields that decide an artifact's bytes and check, defaults resolved: its cache key's options."""
        self.validated()
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["key"] == "artifact"}
        out["opset"] = DEFAULT_OPSET if self.opset is None else self.opset
        for f in fields(self):  # the input options only when given: every other request keeps its key
            if f.name in ("task", "external_data_above") and out.get(f.name) is None:
                del out[f.name]  # every request without it keeps its key
            elif f.name in out and (f.metadata["content"] or f.type.startswith("tuple")):
                if not out[f.name]:
                    del out[f.name]
                elif f.metadata["content"]:
                    out[f.name] = _content_digest(out[f.name], f.metadata["content"])
                else:
                    out[f.name] = list(out[f.name])
        return out

    def job_key_fields(self) -> dict[str, Any]:
        """What tells two job requests apart: the canonical options and the job-only fields
        (a strict client must never join a job that may publish an unverified artifact)."""
        return {**self.canonical(), **{f.name: getattr(self, f.name) for f in fields(self) if f.metadata["key"] == "job"}}

    def public(self) -> dict[str, Any]:
        """The options as an API client or a manifest gives them (format apart, unset ones left out)."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f in fields(self)
                if f.name != "format" and (v := getattr(self, f.name)) not in (None, f.default)}

    @classmethod
    def from_mapping(cls, data: dict[str, Any], **overrides: Any) -> Options:
        """From a JSON object (a job's options, a manifest's); unknown names are a UsageError."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise errors.UsageError(f"unknown option(s): {', '.join(sorted(unknown))}",
                                    hint=f"known options: {', '.join(sorted(names - {'format'}))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in {**data, **overrides}.items() if v is not None}
        return replace(cls(), **values).validated()


def _content_digest(path: str, kind: str) -> str:
    """``sha256:<hex>`` of a file, or of a directory's top-level files (names and bytes): what a cache key
    holds for a path option, so the same bytes anywhere share one artifact."""
    from pathlib import Path

    from zoo.hashing import sha256_file, sha256_json

    target = Path(path).expanduser()
    if kind == "file":
        return "sha256:" + sha256_file(target)
    files = sorted(p for p in target.iterdir() if p.is_file() and not p.is_symlink())
    return "sha256:" + sha256_json({"files": [(p.name, sha256_file(p)) for p in files]})


def _flag(f: Any) -> str:
    return f.metadata["flags"][0] if f.metadata["flags"] else "--" + f.name.replace("_", "-")


def option_fields(*, exclude: tuple[str, ...] = ()) -> list[Any]:
    """The dataclass fields of ``Options``, for code that derives a schema from them."""
    return [f for f in fields(Options) if f.name not in exclude]


def add_arguments(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = (),
                  flags: dict[str, tuple[str, ...]] | None = None, required: tuple[str, ...] = ()) -> None:
    """Add a flag per option to ``parser`` (``flags`` renames some: ``zoo convert`` takes ``--to``)."""
    for f in option_fields(exclude=exclude):
        meta = f.metadata
        names = (flags or {}).get(f.name) or meta["flags"] or ("--" + f.name.replace("_", "-"),)
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if f.type == "bool":
            kwargs["action"] = "store_true"
        elif f.type.startswith("tuple"):
            kwargs.update(action="append", metavar=meta["metavar"] or f.name.upper(), default=None)
        else:
            kwargs["type"] = {"int | None": int, "float | None": float}.get(f.type, str)
            kwargs["metavar"] = meta["metavar"] or f.name.upper()
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
                kwargs.pop("metavar")
            if f.name in required:
                kwargs["required"] = True
            elif f.default is not MISSING:
                kwargs["default"] = f.default
        parser.add_argument(*names, **kwargs)


def from_arguments(args: argparse.Namespace) -> Options:
    """The options a parsed command line gives (fields it has no flag for keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(Options) if hasattr(args, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    return replace(Options(), **values).validated()
