"""Evaluations in the registry database (``zoo.db.evaluations``), keyed by what decides their figures."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from zoo import db

if TYPE_CHECKING:
    from zoo.eval.data import LabelledData
    from zoo.settings import Settings


def evaluation_key(subject: dict[str, Any], data: LabelledData, settings: Settings) -> str:
    """The sha256 of the subject (an artifact's digest, or a source's id and commit), the data set's bytes,
    the examples taken from it, and the versions of every tool that could change a score."""
    from zoo.hashing import sha256_json
    from zoo.pipeline import converter_versions

    who = subject["digest"] if subject.get("digest") else f"{subject['model']}@{subject['revision']}"
    return sha256_json({"kind": subject["kind"], "subject": who, "data": data.sha256, "examples": len(data.examples), "split": data.split,
                        "versions": converter_versions()})


def find(settings: Settings, key: str) -> dict[str, Any] | None:
    engine = db.get_engine(settings.database_url)
    with engine.connect() as conn:
        return conn.execute(sa.select(db.evaluations.c.report).where(db.evaluations.c.key == key)).scalar()


def save(settings: Settings, key: str, row: dict[str, Any]) -> None:
    engine = db.get_engine(settings.database_url)
    record = {"key": key, "digest": row.get("digest") if row["kind"] == "artifact" else None, "model_id": row["model"],
              "revision": row["revision"], "format": row.get("format") or row["kind"], "dataset_sha256": row["dataset"]["sha256"], "report": row,
              "created_at": time.time()}
    with engine.begin() as conn:
        db.upsert(conn, db.evaluations, [record])


def for_artifacts(conn: sa.Connection, digests: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each artifact's stored evaluations (without per-example predictions), newest first."""
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in digests}
    if not digests:
        return out
    rows = conn.execute(sa.select(db.evaluations.c.digest, db.evaluations.c.report)
                        .where(db.evaluations.c.digest.in_(digests))
                        .order_by(db.evaluations.c.created_at.desc())).all()
    for digest, report in rows:
        out[digest].append(summary(report))
    return out


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as ``zoo info`` and reports show it: no per-example predictions."""
    return {k: v for k, v in row.items() if k != "predictions"}
