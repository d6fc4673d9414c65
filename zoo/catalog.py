"""What zoo knows about one model, offline: its record, cached revisions and files, and its artifacts
with their parity reports. ``zoo info`` prints it; the API's model page serves it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.settings import Settings
from zoo.storage.artifacts import ArtifactStore


def model_info(name: str, settings: Settings) -> dict[str, Any]:
    """Everything known offline: record, cached revisions, artifacts, parity reports."""
    from zoo.registry.hf_source import cached_snapshot, describe
    from zoo.registry.index import Registry
    from zoo.registry.names import parse_name

    ref = parse_name(name)
    registry = Registry(settings)
    record = registry.resolve(ref)
    if record.source == "hf" and not record.input_spec:  # not indexed yet: describe from the HF cache
        snap = cached_snapshot(record.repo_id or record.id, ref.revision, settings)
        if snap is None:
            raise errors.ModelNotFoundError(f"{record.id} is neither in the index nor in the local Hugging Face cache",
                                            hint=f"pull it first: zoo pull {record.id}")
        record = describe(record, snap.root, snap.files)
    info = record.to_dict()
    info.pop("files", None)
    info["revisions"] = [{"revision": rev, "files": [f.__dict__ for f in files]} for rev, files in registry.revisions(record.id)]
    store = ArtifactStore(settings.home)
    with registry.engine.connect() as conn:
        rows = conn.execute(sa.select(db.artifacts).where(db.artifacts.c.model_id == record.id)
                            .order_by(db.artifacts.c.created_at)).mappings().all()
        from zoo.eval.store import for_artifacts

        evaluations = for_artifacts(conn, [row["digest"] for row in rows])
    info["artifacts"] = []
    for row in rows:
        art = store.get(row["digest"], verified=row["verified"])
        info["artifacts"].append({"digest": row["digest"], "format": row["format"], "revision": row["revision"],
                                  "verified": row["verified"], "sha256": row["sha256"], "size": row["size"],
                                  "path": str(art.primary_path) if art else None,
                                  "parity": row["manifest"].get("parity", {}),
                                  "conversion": row["manifest"].get("conversion", {}),
                                  "evaluations": evaluations.get(row["digest"], [])})
    return info
