"""``zoo cache verify [--repair]``: re-hash the store and the source files.

Artifacts are re-hashed against their manifests; the source files of every
revision in the registry (the Hugging Face cache snapshots and imported
copies) against the digests recorded when they were fetched. With ``repair``,
a corrupt source file of a hub model is fetched again (verified), and a corrupt
artifact is removed and, when its request can be replayed (a hub or imported
model), converted again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.settings import Settings
from zoo.storage.artifacts import Artifact, ArtifactStore


def verify_cache(settings: Settings, *, repair: bool = False) -> dict[str, Any]:
    """Check (and optionally repair) every artifact and source file; a report dict."""
    store = ArtifactStore(settings.home)
    sources = [_check_source(row, settings, repair) for row in _source_rows(settings)]
    artifacts = []
    for art in store.list():
        problems = store.verify(art)
        entry = {"kind": "artifact", "digest": art.digest, "ok": not problems, "problems": problems}
        if problems and repair:
            entry["repaired"], entry["removed"], entry["note"] = _repair_artifact(art, store, settings)
        artifacts.append(entry)
    results = [r for r in sources if r["problems"]] + artifacts
    corrupt = [r for r in results if not r["ok"] and not r.get("repaired")]
    return {"checked": len(artifacts), "sources_checked": sum(r["files"] for r in sources),
            "corrupt": sum(1 for r in results if not r["ok"]), "unrepaired": len(corrupt), "results": results}


def _source_rows(settings: Settings) -> list[tuple[dict[str, Any], str, list[dict[str, Any]]]]:
    engine = db.get_engine(settings.database_url)
    with engine.connect() as conn:
        records = {r[0]: r[1] for r in conn.execute(sa.select(db.models.c.id, db.models.c.record)
                                                      .where(db.models.c.source.in_(("hf", "local", "timm"))))}
        rows = conn.execute(sa.select(db.revisions.c.model_id, db.revisions.c.revision, db.revisions.c.files)).all()
    return [(records.get(model_id) or {"id": model_id}, rev, files) for model_id, rev, files in rows]


def _source_root(record: dict[str, Any], revision: str, settings: Settings) -> Path | None:
    from zoo.registry.hf_source import repo_cache_dir

    if record.get("source") == "local":
        return settings.home / "local" / str(record.get("name")) / revision
    repo = record.get("repo_id") or record.get("id")
    return repo_cache_dir(settings.hf_hub_cache, repo) / "snapshots" / revision if repo else None


def _check_source(row: tuple[dict[str, Any], str, list[dict[str, Any]]], settings: Settings, repair: bool) -> dict[str, Any]:
    from zoo.registry.download import Expected, check_file

    record, revision, files = row
    root = _source_root(record, revision, settings)
    entry: dict[str, Any] = {"kind": "source", "model": record.get("id"), "revision": revision, "ok": True,
                             "problems": [], "files": 0}
    if root is None or not root.is_dir():
        return entry  # not cached (any more): the next pull fetches it
    for f in files:
        path = root / f["path"]
        if not path.is_file():
            continue
        entry["files"] += 1
        _digest, problem = check_file(path, Expected(sha256=f["sha256"], size=f["size"]))
        if problem is None:
            continue
        entry["ok"] = False
        entry["problems"].append(f"{f['path']}: {problem}")
        if repair:
            entry["repaired"] = _refetch_source(record, revision, f, path, settings) and entry.get("repaired", True)
    return entry


def _refetch_source(record: dict[str, Any], revision: str, f: dict[str, Any], path: Path, settings: Settings) -> bool:
    from zoo.registry.download import Expected, download_file, evict

    repo = record.get("repo_id")
    if record.get("source") == "local" or not repo or settings.hf_offline:
        return False
    evict(path)
    try:
        download_file(repo, f["path"], revision, settings, Expected(sha256=f["sha256"], size=f["size"]))
    except errors.ZooError:
        return False
    return True


def _repair_artifact(art: Artifact, store: ArtifactStore, settings: Settings) -> tuple[bool, bool, str]:
    """Remove a corrupt artifact (index row first), then convert it again when the request can be replayed.
    (repaired, removed, what happened, with the command that makes it again when zoo could not)."""
    manifest = art.manifest_dict()
    engine = db.get_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(db.artifacts).where(db.artifacts.c.digest == art.digest))
    store.remove(art)
    again = remake_command(manifest)
    if not art.verified:
        return False, True, "removed (it was quarantined: parity had failed)"
    try:
        replayed = replay(manifest, settings)
    except errors.ZooError as exc:
        return False, True, f"removed; converting it again failed: {exc.message}" + (f"; later: {again}" if again else "")
    if replayed:
        return True, True, "converted again"
    why = _why_not_replayable(manifest)
    return False, True, f"removed; not converted again: {why}" + (f"; make it again with: {again}" if again else "")


def remake_command(manifest: dict[str, Any]) -> str | None:
    """The command that makes this artifact again by hand."""
    fmt = manifest.get("format")
    source = manifest.get("source") or {}
    if source.get("kind") == "file" and source.get("path"):
        return f"zoo convert {source['path']} --to {fmt}"
    if source.get("kind") == "jax":
        return f"zoo.convert_jax(fn, params, example, format={fmt!r}) in Python"
    name = (manifest.get("record") or {}).get("source")
    if name == "local":
        return f"zoo import DIR --name {manifest['record'].get('name')}, then zoo pull local:{manifest['record'].get('name')} --format {fmt}"
    if manifest.get("model"):
        return f"zoo pull {manifest['model']} --format {fmt}"
    return None


def _why_not_replayable(manifest: dict[str, Any]) -> str:
    source = manifest.get("source") or {}
    if source.get("kind") == "file":
        path = Path(source.get("path", ""))
        return f"its source {path} no longer exists" if not path.exists() else f"its source {path} changed since"
    if source.get("kind") == "jax":
        return "its source was a JAX function in a Python process"
    if (manifest.get("record") or {}).get("source") == "local":
        return "the local model was imported again (or removed) since"
    return "zoo does not know how to make this request again"


def replay(manifest: dict[str, Any], settings: Settings) -> bool:
    """Make the request that produced ``manifest`` again through the pipeline, when its source is still
    there unchanged: the same hub commit, the same local import, the same file bytes. False otherwise."""
    from zoo.options import Options
    from zoo.pipeline import convert_path, pull

    options = Options.from_mapping({k: v for k, v in (manifest.get("options") or {}).items() if k != "format"},
                                   format=manifest["format"])
    source = manifest.get("source") or {}
    if source.get("kind") == "file":
        from zoo.hashing import sha256_file

        path = Path(source["path"])
        if not path.exists() or (path.is_file() and sha256_file(path) != source.get("sha256")):
            return False
        convert_path(path, options, settings=settings)
        return True
    name = _replay_name(manifest, settings)
    if name is None:
        return False
    pull(name, options, settings=settings)
    return True


def _replay_name(manifest: dict[str, Any], settings: Settings) -> str | None:
    record = manifest.get("record") or {}
    source, model, revision = record.get("source"), manifest.get("model"), manifest.get("revision")
    if source in ("hf", "timm") and model and revision:
        return f"{model}@{revision}"
    if source == "keras":
        return (manifest.get("source") or {}).get("name")
    if source == "local":
        from zoo.registry.index import Registry

        current = Registry(settings).get(str(model))
        return f"local:{record.get('name')}" if current is not None and current.revision == revision else None
    return None
