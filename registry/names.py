"""Parse what a user types into a structured model reference.

Accepted forms (timm's ``arch.tag`` and ``hf-hub:`` conventions, plus zoo's own):

    resnet50                 timm architecture; resolves to its default tag
    resnet50.a1_in1k         timm architecture and pretrained tag
    timm:resnet50[.tag]      the same, explicitly
    org/name[@revision]      a Hugging Face repo (timm/... repos are timm models)
    hf:org/name[@revision]   a Hugging Face repo, explicitly (hf-hub: also accepted)
    local:name               a model imported with ``zoo import``
    keras:MobileNetV2[@96]   a Keras application (optionally at a square input size)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.errors import InvalidNameError

SOURCES = ("timm", "hf", "local", "keras")
_PREFIXES = {"timm": "timm", "hf": "hf", "hf-hub": "hf", "local": "local", "keras": "keras"}
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_RE = re.compile(rf"^{_PART}/{_PART}$")
_BARE_RE = re.compile(rf"^{_PART}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_EXAMPLES = "resnet50, resnet50.a1_in1k, timm/resnet50.a1_in1k, hf:org/name@main, local:my-model"


@dataclass(frozen=True)
class ModelRef:
    """A parsed, not yet resolved, model name."""

    text: str  # what the user typed
    source: str | None  # "timm" | "hf" | "local", or None when the bare name decides
    name: str  # "resnet50", "resnet50.a1_in1k", "org/name" or a local name
    revision: str | None = None

    @property
    def is_repo(self) -> bool:
        return "/" in self.name


def _invalid(text: str, why: str) -> InvalidNameError:
    return InvalidNameError(
        f"invalid model name {text!r}: {why}",
        hint=f"use one of the forms: {_EXAMPLES}",
        name=text,
    )


def parse_name(text: str) -> ModelRef:
    """Parse ``text``; raise InvalidNameError (never assert) when it is malformed."""
    raw = text
    text = text.strip()
    if not text:
        raise _invalid(raw, "the name is empty")
    source = None
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in _PREFIXES:
        source, text = _PREFIXES[prefix.lower()], rest
    elif sep:
        raise _invalid(raw, f"unknown source prefix {prefix!r} (known: timm:, hf:, local:, keras:)")
    name, at, revision = text.partition("@")
    if at and not revision:
        raise _invalid(raw, "nothing after '@' (give a branch, tag or commit sha)")
    if revision and not _REVISION_RE.match(revision) or ".." in revision:
        raise _invalid(raw, f"revision {revision!r} has characters a git revision cannot have")
    if ".." in name or name.startswith(("/", ".")) or "\\" in name:
        raise _invalid(raw, "path-like names are not model names (use `zoo import DIR --name N` for a directory)")
    if "/" in name:
        if not _REPO_RE.match(name):
            raise _invalid(raw, "a repo id is org/name with letters, digits, '.', '_' and '-'")
        if source == "local":
            raise _invalid(raw, "local names have no '/'")
        if source == "timm" and not name.startswith("timm/"):
            raise _invalid(raw, "timm: names are arch or arch.tag, not repo ids")
        if source == "timm":
            name = name.split("/", 1)[1]
    elif not _BARE_RE.match(name):
        raise _invalid(raw, "names use letters, digits, '.', '_' and '-'")
    elif source == "hf":
        raise _invalid(raw, "Hugging Face names are org/name")
    if source == "keras":
        if "/" in name or revision and not revision.isdigit():
            raise _invalid(raw, "Keras applications are keras:Name or keras:Name@SIZE (a square input size)")
        return ModelRef(text=raw, source=source, name=name, revision=revision or None)
    if revision and source in ("timm", "local") or revision and source is None and "/" not in name:
        raise _invalid(raw, "only Hugging Face repos (org/name@rev) take a revision")
    return ModelRef(text=raw, source=source, name=name, revision=revision or None)
