"""``zoo cache ls|rm|verify``: offline views of the artifact store."""

from __future__ import annotations

import argparse
import json
from typing import Any

import sqlalchemy as sa

from zoo import db, errors
from zoo.cli.output import emit
from zoo.errors import EXIT_OK
from zoo.settings import Settings
from zoo.storage.artifacts import ArtifactStore


def cmd_cache(args: argparse.Namespace, settings: Settings) -> int:
    store = ArtifactStore(settings.home)
    action = args.cache_command
    if action == "ls":
        rows = [_row(a) for a in store.list()]
        text = "\n".join(f"{r['digest'][:16]}  {'verified  ' if r['verified'] else 'QUARANTINE'}  {r['model']}  {r['format']}  "
                         f"{r['size'] / 1e6:.1f} MB  {r['path']}" for r in rows)
        emit(args, {"artifacts": rows}, text or "the store is empty")
        return EXIT_OK
    if action == "verify":
        from zoo.integrity import verify_cache

        report = verify_cache(settings, repair=args.repair)
        lines = []
        for r in report["results"]:
            what = r.get("digest", "")[:16] if r["kind"] == "artifact" else f"source {r['model']}@{r['revision'][:12]}"
            state = "ok" if r["ok"] else ("REPAIRED: " if r.get("repaired") else "CORRUPT: ") + "; ".join(r["problems"])
            if r.get("note"):
                state += f" -> {r['note']}"
            lines.append(f"{what}  {state}")
        removed = sum(1 for r in report["results"] if r.get("removed") and not r.get("repaired"))
        still = report["unrepaired"] - removed
        lines.append(f"{report['checked']} artifact(s) and {report['sources_checked']} source file(s) checked, "
                     f"{report['corrupt']} corrupt" + (f", {removed} removed and not made again" if removed else "")
                     + (f", {still} still corrupt" if still else "")
                     + ("" if report["corrupt"] or not args.repair else ", nothing to repair"))
        emit(args, report, "\n".join(lines))
        if report["unrepaired"]:
            raise errors.IntegrityError(_verify_failure(report, args.repair, removed, still),
                                        hint=_verify_hint(args.repair, removed, still))
        return EXIT_OK
    return _remove(args, settings, store)


def _verify_failure(report: dict[str, Any], repaired: bool, removed: int, still: int) -> str:
    if not repaired:
        return f"{report['unrepaired']} artifact(s) or source(s) failed verification"
    parts = [f"{removed} corrupt artifact(s) were removed and could not be made again"] if removed else []
    if still:
        parts.append(f"{still} source file(s) are still corrupt")
    return "; ".join(parts)


def _verify_hint(repaired: bool, removed: int, still: int) -> str:
    if not repaired:
        return ("run `zoo cache verify --repair` (online for hub sources), or remove them with `zoo cache rm DIGEST` "
                "and pull again")
    hints = ["make each removed artifact again with the command shown on its line"] if removed else []
    if still:
        hints.append("corrupt source files of a hub model are fetched again online (unset HF_HUB_OFFLINE); "
                     "an imported model needs `zoo import DIR --name N` again")
    return "; ".join(hints)


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
    emit(args, {"removed": removed}, "\n".join(f"removed {d}" for d in removed))
    return EXIT_OK


def _manifest(art) -> dict[str, Any]:
    return json.loads((art.path / "zoo.json").read_text())


def _row(art) -> dict[str, Any]:
    m = _manifest(art)
    entry = art.primary_entry()
    return {"digest": art.digest, "verified": art.verified, "model": m.get("model"), "revision": m.get("revision"),
            "format": m.get("format"), "path": str(art.primary_path), "sha256": entry["sha256"], "size": entry["size"],
            "parity_passed": (m.get("parity") or {}).get("passed")}


