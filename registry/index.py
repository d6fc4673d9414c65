"""The registry index: records in the database, name resolution, search."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Callable, Iterable

import sqlalchemy as sa

from zoo import db, errors
from zoo.registry.names import ModelRef
from zoo.registry.records import FileInfo, ModelRecord
from zoo.settings import Settings

TIMM_VERSION_KEY = "timm_catalog_version"


class Registry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.get_engine(settings.database_url)

    # --- records -----------------------------------------------------------
    def get(self, model_id: str) -> ModelRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.models.c.record).where(db.models.c.id == model_id)).first()
        return ModelRecord.from_dict(row[0]) if row else None

    def upsert(self, record: ModelRecord) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, [record])

    @staticmethod
    def _upsert(conn: sa.Connection, records: Iterable[ModelRecord]) -> None:
        rows = [
            {"id": r.id, "source": r.source, "name": r.name, "arch": r.arch, "tag": r.tag,
             "is_default": r.is_default, "record": {**r.to_dict(), "files": []}}
            for r in records
        ]
        db.upsert(conn, db.models, rows)

    def add_revision(self, model_id: str, revision: str, files: list[FileInfo]) -> None:
        payload = [f.__dict__ for f in files]
        with self.engine.begin() as conn:
            db.upsert(conn, db.revisions, [{"model_id": model_id, "revision": revision, "files": payload}])

    def revision_files(self, model_id: str, revision: str) -> list[FileInfo] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.revisions.c.files).where(
                (db.revisions.c.model_id == model_id) & (db.revisions.c.revision == revision))).first()
        return [FileInfo(**f) for f in row[0]] if row else None

    def revisions(self, model_id: str) -> list[tuple[str, list[FileInfo]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.revisions.c.revision, db.revisions.c.files)
                                .where(db.revisions.c.model_id == model_id).order_by(db.revisions.c.fetched_at)).all()
        return [(r[0], [FileInfo(**f) for f in r[1]]) for r in rows]

    # --- timm catalog ------------------------------------------------------
    def ensure_timm_catalog(self, *, quiet: bool = False) -> bool:
        """Index timm's catalog once per installed timm version; False if timm is absent."""
        from zoo.registry.timm_source import iter_catalog
        from zoo.versions import dist_version

        version = dist_version("timm")  # from metadata: importing timm costs ~4 s
        if version is None:
            return False
        with self.engine.connect() as conn:
            indexed = db.get_meta(conn, TIMM_VERSION_KEY)
        if indexed == version:
            return True
        if not self.settings.index_catalogs:  # the API process: use what is there, never import timm
            return indexed is not None
        if not quiet:
            print(f"zoo: indexing timm {version}'s pretrained catalog (once per timm version)...", file=sys.stderr)
        records = list(iter_catalog())
        with self.engine.begin() as conn:
            conn.execute(sa.delete(db.models).where(db.models.c.source == "timm"))
            self._upsert(conn, records)
            db.set_meta(conn, TIMM_VERSION_KEY, version)
        return True

    def ensure_keras_catalog(self) -> None:
        """Index the static Keras applications table once per zoo version."""
        from zoo import __version__
        from zoo.registry.keras_source import iter_catalog

        with self.engine.connect() as conn:
            if db.get_meta(conn, "keras_catalog_version") == __version__:
                return
        with self.engine.begin() as conn:
            conn.execute(sa.delete(db.models).where(db.models.c.source == "keras"))
            self._upsert(conn, iter_catalog())
            db.set_meta(conn, "keras_catalog_version", __version__)

    # --- resolution --------------------------------------------------------
    def resolve(self, ref: ModelRef) -> ModelRecord:
        """The record a parsed name refers to (HF repos not yet indexed get a stub)."""
        if ref.source == "local":
            return self.get(f"local/{ref.name}") or self._not_found(ref, sources=("local",))
        if ref.source == "keras":
            self.ensure_keras_catalog()
            record = self.get(f"keras/{ref.name}") or self._not_found(ref, sources=("keras",))
            if ref.revision:
                from zoo.registry.keras_source import with_input_size

                record = with_input_size(record, int(ref.revision))
            return record
        if ref.is_repo:
            existing = self.get(ref.name)
            if existing is None and ref.name.startswith("timm/") and ref.source != "hf" and self.ensure_timm_catalog():
                existing = self.get(ref.name)
            if existing is not None:
                return existing
            return ModelRecord(id=ref.name, source="hf", name=ref.name, repo_id=ref.name, library="transformers")
        sources = ("timm",) if ref.source == "timm" else ("timm", "local")
        have_timm = self.ensure_timm_catalog()
        if ref.source == "timm" and not have_timm:
            raise errors.MissingDependencyError("timm is not installed, so timm: names cannot be resolved",
                                                hint="pip install 'zoo-hub[torch]'")
        matches = self._match_bare(ref.name, sources)
        if len(matches) == 1:
            return matches[0]
        if not matches and not have_timm:
            raise errors.MissingDependencyError(
                f"{ref.text!r} is not a local import, and timm is not installed to resolve timm names",
                hint="pip install 'zoo-hub[torch]', or use org/name for a Hugging Face repo")
        if len(matches) > 1:
            choices = sorted(f"{m.source}:{m.name}" for m in matches)
            raise errors.AmbiguousNameError(
                f"{ref.text!r} matches {len(matches)} models: {', '.join(choices[:12])}{' ...' if len(choices) > 12 else ''}",
                hint="give the full name, e.g. " + choices[0], name=ref.text, choices=choices,
            )
        return self._not_found(ref, sources)

    def _match_bare(self, name: str, sources: tuple[str, ...]) -> list[ModelRecord]:
        m = db.models.c
        with self.engine.connect() as conn:
            query = sa.select(m.record).where(m.source.in_(sources))
            exact = conn.execute(query.where((m.name == name) | ((m.arch == name) & m.is_default & (m.source == "timm")))).all()
            if not exact and "." in name:  # a unique prefix of a tag: resnet50.a1 -> resnet50.a1_in1k
                exact = conn.execute(query.where(m.name.startswith(name, autoescape=True) & (m.source == "timm"))).all()
        return [ModelRecord.from_dict(r[0]) for r in exact]

    def _not_found(self, ref: ModelRef, sources: tuple[str, ...]) -> ModelRecord:
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.select(db.models.c.name).where(db.models.c.source.in_(sources)))]
        archs = {n.split(".", 1)[0] for n in names}
        close = difflib.get_close_matches(ref.name, sorted(archs | set(names)), n=5, cutoff=0.6)
        hint = ("did you mean: " + ", ".join(close)) if close else "run `zoo list PATTERN` to search, or use org/name for a Hugging Face repo"
        raise errors.ModelNotFoundError(f"no model named {ref.text!r} in {', '.join(sources)}", hint=hint, name=ref.text, candidates=close)

    # --- search ------------------------------------------------------------
    def search(self, pattern: str | None = None, *, source: str | None = None, limit: int | None = None,
               offset: int = 0) -> list[ModelRecord]:
        query = sa.select(db.models.c.record).where(self._matching(pattern, source)).order_by(db.models.c.source,
                                                                                              db.models.c.name)
        if limit:
            query = query.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [ModelRecord.from_dict(r[0]) for r in conn.execute(query)]

    def count(self, pattern: str | None = None, *, source: str | None = None) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(db.models)
                                .where(self._matching(pattern, source))).scalar_one()

    @staticmethod
    def _matching(pattern: str | None, source: str | None) -> sa.ColumnElement[bool]:
        m = db.models.c
        where = sa.true()
        if source:
            where = where & (m.source == source)
        if pattern:
            like = pattern.replace("*", "%") if "*" in pattern else f"%{pattern}%"
            where = where & (m.name.like(like) | m.id.like(like))
        return where


def cached_hf_repos(hub_cache: Path) -> list[tuple[str, list[str]]]:
    """(repo_id, [commits]) for each model repo in the local Hugging Face cache."""
    out = []
    if not hub_cache.is_dir():
        return out
    for repo_dir in sorted(hub_cache.glob("models--*")):
        repo_id = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        snaps = repo_dir / "snapshots"
        commits = sorted(p.name for p in snaps.iterdir()) if snaps.is_dir() else []
        out.append((repo_id, commits))
    return out


Progress = Callable[[str], None]
