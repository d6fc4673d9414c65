"""Where artifact bytes live. ``artifacts``: the content-addressed store in ``ZOO_HOME`` that publishes
atomically; ``blobs``: what the service reads and serves by sha256 (the local store, or S3); ``s3``: an
S3-compatible bucket shared by workers and the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

    from zoo.settings import Settings
    from zoo.storage.blobs import Storage


def make_storage(settings: Settings, engine: sa.Engine) -> Storage:
    """The storage backend ``ZOO_STORAGE`` names: the local store, or an S3-compatible bucket."""
    if settings.storage == "s3":
        from zoo.storage.s3 import S3Storage

        return S3Storage(settings, engine)
    from zoo.storage.blobs import LocalStorage

    return LocalStorage(settings, engine)
