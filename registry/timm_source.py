"""timm's pretrained catalog as a registry source, read offline from the
installed timm (about 1.8k ``arch.tag`` entries)."""

from __future__ import annotations

from typing import Any, Iterator

from zoo.errors import MissingDependencyError
from zoo.registry.records import ModelRecord, image_input_spec

_PREPROCESSING_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
# What timm's model files declare when they say nothing else (timm.data.constants, each model's _cfg): a
# config.json that names only the architecture (a user's own state dict, README "Bring your own model") gets these.
_TIMM_DEFAULTS = {"interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def record_from_pretrained_cfg(cfg: dict[str, Any], *, is_default: bool) -> ModelRecord:
    """Turn one timm ``PretrainedCfg`` (as a dict) into a registry record."""
    arch, tag = cfg["architecture"], cfg.get("tag") or ""
    name = f"{arch}.{tag}" if tag else arch
    num_classes = cfg.get("num_classes")
    preprocessing = {k: _jsonable(cfg[k]) for k in _PREPROCESSING_KEYS if cfg.get(k) is not None}
    input_size = tuple(cfg.get("input_size") or (3, 224, 224))
    preprocessing = {**_TIMM_DEFAULTS, "input_size": list(input_size), **preprocessing}
    extra = {k: _jsonable(cfg[k]) for k in ("test_input_size", "test_crop_pct", "fixed_input_size", "url", "paper_ids") if cfg.get(k)}
    return ModelRecord(
        id=f"timm/{name}",
        source="timm",
        name=name,
        repo_id=cfg.get("hf_hub_id") or None,
        repo_filename=cfg.get("hf_hub_filename") or None,
        library="timm",
        arch=arch,
        tag=tag or None,
        is_default=is_default,
        task="image-classification" if num_classes else "feature-extraction",
        input_spec=image_input_spec(input_size),
        preprocessing=preprocessing,
        num_classes=num_classes or None,
        license=cfg.get("license"),
        extra=extra,
    )


def iter_catalog() -> Iterator[ModelRecord]:
    """Every pretrained ``arch.tag`` of the installed timm, as records."""
    try:
        import timm
        from timm.models import get_pretrained_cfg
    except ImportError as exc:  # pragma: no cover - exercised on a core-only install
        raise MissingDependencyError(
            "timm is not installed, so timm's catalog is unavailable",
            hint="install the PyTorch extra: pip install 'zoo-hub[torch]'",
        ) from exc
    default_tags: dict[str, str | None] = {}
    for full_name in timm.list_pretrained():
        arch = full_name.split(".", 1)[0]
        cfg = get_pretrained_cfg(full_name)
        if cfg is None:
            continue
        if arch not in default_tags:  # get_pretrained_cfg(arch) answers with the default tag
            default_cfg = get_pretrained_cfg(arch)
            default_tags[arch] = default_cfg.tag if default_cfg is not None else None
        yield record_from_pretrained_cfg(cfg.to_dict(), is_default=cfg.tag == default_tags[arch])
