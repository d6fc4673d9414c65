"""``zoo info`` and ``zoo cache ls|rm|verify``: offline views of the index and store."""

from __future__ import annotations

import argparse
import json
from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.errors import EXIT_OK
from zoo.settings import Settings
from zoo.store import ArtifactStore


def model_info(name: str, settings: Settings) -> dict[str, Any]:
    """Everything known offline: record, cached revisions, artifacts, parity reports."""
    from registry.hf_source import cached_snapshot, describe
    from registry.index import Registry
    from registry.names import parse_name

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
    info["artifacts"] = []
    for row in rows:
        art = store.get(row["digest"], verified=row["verified"])
        info["artifacts"].append({"digest": row["digest"], "format": row["format"], "revision": row["revision"],
                                  "verified": row["verified"], "sha256": row["sha256"], "size": row["size"],
                                  "path": str(art.primary_path) if art else None,
                                  "parity": row["manifest"].get("parity", {}),
                                  "conversion": row["manifest"].get("conversion", {})})
    return info


def cmd_cache(args: argparse.Namespace, settings: Settings) -> int:
    store = ArtifactStore(settings.home)
    action = args.cache_command
    if action == "ls":
        rows = [_row(a) for a in store.list()]
        text = "\n".join(f"{r['digest'][:16]}  {'verified  ' if r['verified'] else 'QUARANTINE'}  {r['model']}  {r['format']}  "
                         f"{r['size'] / 1e6:.1f} MB  {r['path']}" for r in rows)
        _out(args, {"artifacts": rows}, text or "the store is empty")
        return EXIT_OK
    if action == "verify":
        from zoo.integrity import verify_cache

        report = verify_cache(settings, repair=args.repair)
        lines = []
        for r in report["results"]:
            what = r.get("digest", "")[:16] if r["kind"] == "artifact" else f"source {r['model']}@{r['revision'][:12]}"
            state = "ok" if r["ok"] else ("REPAIRED: " if r.get("repaired") else "CORRUPT: ") + "; ".join(r["problems"])
            lines.append(f"{what}  {state}")
        lines.append(f"{report['checked']} artifact(s) and {report['sources_checked']} source file(s) checked, "
                     f"{report['corrupt']} corrupt, {report['unrepaired']} left unrepaired")
        _out(args, report, "\n".join(lines))
        if report["unrepaired"]:
            raise errors.IntegrityError(f"{report['unrepaired']} artifact(s) or source(s) failed verification",
                                        hint="run `zoo cache verify --repair` (online for hub sources), or remove them "
                                             "with `zoo cache rm DIGEST` and pull again")
        return EXIT_OK
    return _remove(args, settings, store)


def _remove(args: argparse.Namespace, settings: Settings, store: ArtifactStore) -> int:
    engine = db.get_engine(settings.database_url)
    removed = []
    for target in args.targets:
        matches = [a for a in store.list() if a.digest.startswith(target) or _manifest(a).get("model") == target]
        if not matches:
            raise errors.ArtifactNotFoundError(f"no artifact matches {target!r}", hint="see `zoo cache ls`")
        for art in matches:
            with engine.begin() as conn:  # index first: a crash in between leaves an orphan, never a dangling row
                conn.execute(sa.delete(db.artifacts).where(db.artifacts.c.digest == art.digest))
            store.remove(art)
            removed.append(art.digest)
    _out(args, {"removed": removed}, "\n".join(f"removed {d}" for d in removed))
    return EXIT_OK


def _manifest(art) -> dict[str, Any]:
    return json.loads((art.path / "zoo.json").read_text())


def _row(art) -> dict[str, Any]:
    m = _manifest(art)
    entry = art.primary_entry()
    return {"digest": art.digest, "verified": art.verified, "model": m.get("model"), "revision": m.get("revision"),
            "format": m.get("format"), "path": str(art.primary_path), "sha256": entry["sha256"], "size": entry["size"],
            "parity_passed": (m.get("parity") or {}).get("passed")}


def _out(args: argparse.Namespace, obj: Any, text: str) -> None:
    from zoo.cli import _emit

    _emit(args, obj, text)
