"""Installed package versions, read from their metadata: no import of the package itself
(``import timm`` alone takes ~4 s)."""

from __future__ import annotations

import importlib.metadata
from typing import Iterable


def dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dist_versions(names: Iterable[str]) -> dict[str, str]:
    """``{name: version}`` for the installed ones among ``names``."""
    return {name: version for name in names if (version := dist_version(name)) is not None}
