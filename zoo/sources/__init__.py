"""What a conversion starts from.

Every kind of source is a :class:`Source`: a registry record fetched from a hub (timm, Hugging Face),
a local import, a Keras application, a model file or directory the user holds (``zoo convert``), and
next training checkpoints, FastAI and JAX. The one pipeline (``zoo.pipeline.run``) drives each the same
way::

    fetch (files and their sha256: the cache key covers their bytes) -> plan -> cache lookup
      -> verify (re-hash before any loader) -> open (model, reference runner, inputs) -> convert
      -> check parity -> publish

A new kind of source is a subclass in this package and one line in ``source_for_name`` or
``source_for_path``; nothing else in the pipeline changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo.sources.base import Opened, Runner, Source

if TYPE_CHECKING:
    from zoo.progress import Progress
    from zoo.registry.index import Registry
    from zoo.settings import Settings

__all__ = ["Opened", "Runner", "Source", "source_for_name", "source_for_path"]


def source_for_name(name: str, settings: Settings, registry: Registry, progress: Progress) -> Source:
    """The source a model name refers to, resolved in the index (no download yet)."""
    from zoo.registry.names import parse_name

    ref = parse_name(name)
    with progress.stage("resolve", name):
        record = registry.resolve(ref)
    if record.source == "keras":
        from zoo.sources.keras_apps import KerasApplicationSource

        return KerasApplicationSource(record, settings, registry)
    from zoo.sources.hub import RecordSource

    return RecordSource(record, ref.revision, settings, registry)


def source_for_path(path: Path, settings: Settings, registry: Registry, progress: Progress) -> Source:
    """A model file or SavedModel directory the user holds; a model directory or archive is imported
    (as ``zoo import`` does) and becomes the source of its local record."""
    from zoo.archives import ARCHIVE_SUFFIXES
    from zoo.converters.loaders.files import detect_source
    from zoo.sources.files import FileSource, import_name

    path = path.expanduser()
    kind = detect_source(path)
    from zoo.registry.checkpoints import detect as checkpoint_layout

    if kind is None and (path.is_dir() or path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)
                         or checkpoint_layout(path) is not None):  # a training checkpoint: imported first
        from zoo.registry.local_source import import_path
        from zoo.sources.hub import RecordSource

        with progress.stage("import", str(path)):
            record = import_path(path, import_name(path), settings)
        return RecordSource(record, None, settings, registry)
    return FileSource(path, kind, settings, registry)
