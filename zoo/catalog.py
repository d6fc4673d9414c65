"""What zoo knows about one model, offline: its record, cached revisions and files, and its artifacts
with their parity reports. ``zoo info`` prints it; the API's model page serves it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
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
                                  "file": row["primary_file"],
                                  "path": str(art.primary_path) if art else None,
                                  "parity": row["manifest"].get("parity", {}),
                                  "conversion": row["manifest"].get("conversion", {}),
                                  "evaluations": evaluations.get(row["digest"], []),
                                  **{k: row["manifest"][k] for k in MANIFEST_EXTRAS if k in row["manifest"]}})
    return info


# --- the web catalog's read models (``zoo serve``'s pages) -----------------------------------------------
# Figures a later stage may add to a manifest, shown where present: ``benchmark.latency_ms`` (median, batch 1,
# in the format's own runtime); accuracy deltas come from ``zoo eval``'s evaluations table (``zoo.eval.store``).
MANIFEST_EXTRAS = ("benchmark", "evaluation")
CARD_MAX_BYTES = 512 * 1024
_ACTIVE = ("queued", "running")


def search_models(settings: Settings, q: str | None = None, *, source: str | None = None, task: str | None = None,
                  fmt: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A page of the index for people: every word of ``q`` in the id (any case), filtered by source, task and
    a format already verified; each row with its task, licence and verified formats. Names equal to ``q``
    come first, then names starting with it, then the rest by source and name."""
    m, a = db.models.c, db.artifacts.c
    task_of = m.record["task"].as_string()
    where = sa.true()
    terms = (q or "").lower().split()
    for term in terms:
        where = where & sa.func.lower(m.id).contains(term, autoescape=True)
    if source:
        where = where & (m.source == source)
    if task:
        where = where & (task_of == task)
    if fmt:
        where = where & m.id.in_(sa.select(a.model_id).where((a.format == fmt) & a.verified))
    order: list[Any] = [m.source, m.name]
    if len(terms) == 1:
        name = sa.func.lower(m.name)
        order = [sa.case((name == terms[0], 0), (name.startswith(terms[0], autoescape=True), 1), else_=2), *order]
    columns = (m.id, m.source, m.name, m.is_default, task_of.label("task"),
               m.record["license"].as_string().label("license"), m.record["library"].as_string().label("library"))
    with db.get_engine(settings.database_url).connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(db.models).where(where)).scalar_one()
        # the page's ids first, then their JSON fields: sorting never reads a record (3x faster on timm's catalog)
        ids = conn.execute(sa.select(m.id).where(where).order_by(*order).limit(limit).offset(offset)).scalars().all()
        found = {r["id"]: dict(r) for r in conn.execute(sa.select(*columns).where(m.id.in_(ids))).mappings()} \
            if ids else {}
        rows = [found[i] for i in ids]
        verified: dict[str, set[str]] = {}
        if rows:
            found = conn.execute(sa.select(a.model_id, a.format).where(a.model_id.in_([r["id"] for r in rows])
                                                                       & a.verified).distinct())
            for model_id, fmt_ in found:
                verified.setdefault(model_id, set()).add(fmt_)
    for row in rows:
        row["formats"] = sorted(verified.get(row["id"], ()))
    return rows, total


def catalog_facets(settings: Settings) -> dict[str, list[tuple[str, int]]]:
    """What the catalog's filters offer: sources, tasks and verified formats, each with its count of models."""
    m, a = db.models.c, db.artifacts.c
    task_of = m.record["task"].as_string()
    with db.get_engine(settings.database_url).connect() as conn:
        sources = conn.execute(sa.select(m.source, sa.func.count()).group_by(m.source).order_by(m.source)).all()
        tasks = conn.execute(sa.select(task_of, sa.func.count()).where(task_of.is_not(None))
                             .group_by(task_of).order_by(task_of)).all()
        formats = conn.execute(sa.select(a.format, sa.func.count(sa.distinct(a.model_id))).where(a.verified)
                               .group_by(a.format).order_by(a.format)).all()
    return {"sources": [tuple(r) for r in sources], "tasks": [tuple(r) for r in tasks],
            "formats": [tuple(r) for r in formats]}


def format_matrix(info: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """One row per format the model can reach (and any other it has an artifact in): verified, failed,
    converting or not converted, with the figures of its newest artifact (a verified one first) and, for a
    failure, the first diverging node or the failed job's error."""
    from zoo.converters.graph import reachable
    from zoo.registry.records import ModelRecord
    from zoo.sources.hub import record_node

    record = ModelRecord.from_dict(info)
    formats = reachable(record_node(record), record.task)  # onnx-int4 only for decoders
    by_format: dict[str, list[dict[str, Any]]] = {}
    for art in info["artifacts"]:  # oldest first
        by_format.setdefault(art["format"], []).append(art)
    jobs = _latest_jobs(settings, _names_of(info))
    rows = []
    for fmt in formats + sorted(set(by_format) - set(formats)):
        arts = by_format.get(fmt, [])
        verified = [a for a in arts if a["verified"]]
        art = (verified or arts or [None])[-1]
        job = jobs.get(fmt)
        if verified:
            state = "verified"
        elif job is not None and job["state"] in _ACTIVE:
            state = "converting"
        elif art is not None or (job is not None and job["state"] == "failed"):
            state = "failed"
        else:
            state = "not converted"
        rows.append({"format": fmt, "state": state, "artifact": art, "job": job, **_figures(art)})
    return rows


def _figures(art: dict[str, Any] | None) -> dict[str, Any]:
    if art is None:
        return {"max_abs_diff": None, "top1_agreement": None, "accuracy_delta": None, "latency_ms": None,
                "divergence": None}
    parity = art.get("parity") or {}
    top1 = [o.get("top1_agreement") for o in (parity.get("outputs") or {}).values()]
    return {"max_abs_diff": _number(parity.get("max_abs_diff")),
            "top1_agreement": min((t for t in map(_number, top1) if t is not None), default=None),
            "accuracy_delta": _accuracy_delta(art),
            "latency_ms": _number((art.get("benchmark") or {}).get("latency_ms")),
            "divergence": parity.get("divergence")}


def _accuracy_delta(art: dict[str, Any]) -> float | None:
    """The newest evaluation's change of its task's first metric (top-1, accuracy...) as a fraction, from
    ``zoo eval``'s evaluations table (deltas there are in percentage points)."""
    for row in art.get("evaluations") or []:
        delta = row.get("delta") or {}
        if delta and not row.get("error"):
            return _number(next(iter(delta.values()))) / 100
    return _number((art.get("evaluation") or {}).get("accuracy_delta"))


def _number(value: Any) -> float | None:
    """A figure from a report (JSON-safe: NaN and infinities are strings there)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _names_of(info: dict[str, Any]) -> list[str]:
    """The names a job may have asked for this model by."""
    names = {info["id"], info["name"], f"{info['source']}:{info['name']}"}
    if info.get("repo_id"):
        names |= {info["repo_id"], f"hf:{info['repo_id']}"}
    if info["source"] == "timm" and info.get("is_default") and info.get("arch"):
        names |= {info["arch"], f"timm:{info['arch']}"}
    return sorted(names)


def _latest_jobs(settings: Settings, names: list[str]) -> dict[str, dict[str, Any]]:
    """The newest job per format among those asking for one of ``names``."""
    j = db.jobs.c
    with db.get_engine(settings.database_url).connect() as conn:
        rows = conn.execute(sa.select(j.id, j.format, j.state, j.stage, j.error, j.created_at)
                            .where(j.model.in_(names)).order_by(j.created_at.desc()).limit(500)).mappings().all()
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.setdefault(row["format"], dict(row))
    return latest


def snapshot_root(info: dict[str, Any], revision: str, settings: Settings) -> Path | None:
    """Where the files of one revision of a model lie on this machine (None when nowhere)."""
    from zoo.registry.hf_source import COMMIT_RE, repo_cache_dir

    if info["source"] == "local":
        root = settings.home / "local" / info["name"] / revision
    elif info.get("repo_id") and COMMIT_RE.match(revision):
        root = repo_cache_dir(settings.hf_hub_cache, info["repo_id"]) / "snapshots" / revision
    else:
        return None
    return root if root.is_dir() else None


def model_card(info: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """The repo's README.md, as text, from the newest revision held here: {"text", "revision", "truncated"}.
    Read from local files only (the server fetches nothing for a page); a link leading out of the repo's
    cache is not followed."""
    from zoo.registry.hf_source import CARD, cached_commit, repo_cache_dir

    revisions = [r["revision"] for r in reversed(info["revisions"])]
    if info.get("repo_id"):
        revisions.append(cached_commit(info["repo_id"], None, settings.hf_hub_cache) or "")
    for revision in revisions:
        root = snapshot_root(info, revision, settings) if revision else None
        card = root / CARD if root else None
        if card is None or not card.is_file():
            continue
        base = (repo_cache_dir(settings.hf_hub_cache, info["repo_id"]) if info.get("repo_id") else root).resolve()
        if not card.resolve().is_relative_to(base):
            continue
        with open(card, "rb") as f:
            raw = f.read(CARD_MAX_BYTES + 1)
        return {"text": raw[:CARD_MAX_BYTES].decode("utf-8", "replace"), "revision": revision,
                "truncated": len(raw) > CARD_MAX_BYTES}
    return None


_VERDICTS: dict[tuple[str, str], dict[str, str]] = {}  # (sha256, name) -> verdict: files are content-addressed


def file_verdicts(info: dict[str, Any], settings: Settings) -> dict[str, dict[str, dict[str, str]]]:
    """zoo's safety verdict on every file of every revision held: {revision: {path: {"state", "detail"}}}.
    ``state``: "safe" (checked weights), "data" (never executed), "refused" (a file zoo will not load),
    "invalid", or "absent" (not on this machine). The checks read bytes and JSON only, as a pull does."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for rev in info["revisions"]:
        root = snapshot_root(info, rev["revision"], settings)
        out[rev["revision"]] = {f["path"]: file_verdict(root, f["path"], f["sha256"]) for f in rev["files"]}
    return out


def file_verdict(root: Path | None, name: str, sha256: str) -> dict[str, str]:
    """The verdict on one file (memoised by content)."""
    from zoo import safety
    from zoo.registry.hf_source import validate_repo_path

    key = (sha256, name)
    if key in _VERDICTS:
        return _VERDICTS[key]
    try:
        validate_repo_path(name)
    except errors.UnsafeModelError as exc:
        return {"state": "refused", "detail": exc.message}
    path = root / name if root else None
    if path is None or not path.is_file():
        return {"state": "absent", "detail": "not on this server"}
    suffix = PurePosixPath(name).suffix.lower()
    try:
        if suffix == ".safetensors":
            safety.check_safetensors(path, name)
            verdict = {"state": "safe", "detail": "safetensors: header and tensor offsets checked"}
        elif suffix in safety.PICKLE_SUFFIXES:
            safety.check_pickle_weights(path, name)
            verdict = {"state": "safe", "detail": "pickle naming tensors only (loaded with weights_only=True)"}
        elif suffix in (".keras", ".h5", ".hdf5"):
            safety.check_keras_file(path)
            verdict = {"state": "safe", "detail": "Keras file naming Keras' own classes only (safe mode)"}
        elif suffix == ".onnx":
            safety.check_onnx_external_data(path)
            verdict = {"state": "safe", "detail": "ONNX: external data stays beside the model"}
        elif suffix == ".py":
            verdict = {"state": "refused", "detail": "Python code: zoo never runs code from a repo"}
        else:
            if PurePosixPath(name).name in safety.REMOTE_CODE_FILES:
                safety.check_remote_code(path.parent, [path.name], name)
            verdict = {"state": "data", "detail": "read as data, never executed"}
    except errors.UnsafeModelError as exc:
        verdict = {"state": "refused", "detail": exc.message}
    except errors.ZooError as exc:
        verdict = {"state": "invalid", "detail": exc.message}
    if len(_VERDICTS) > 4096:
        _VERDICTS.clear()
    _VERDICTS[key] = verdict
    return verdict
