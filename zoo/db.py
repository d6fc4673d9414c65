"""The registry database: SQLAlchemy Core tables, SQLite by default, any
SQLAlchemy URL (PostgreSQL) through ``ZOO_DATABASE_URL``.

Core rather than the ORM: a cached ``zoo pull`` reads two rows and must start
fast (``sqlalchemy.orm`` alone costs ~0.3 s to import here).
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

metadata = sa.MetaData()

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False, index=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("arch", sa.String(255), index=True),
    sa.Column("tag", sa.String(128)),
    sa.Column("is_default", sa.Boolean, nullable=False, default=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("model_id", sa.String(255), primary_key=True),
    sa.Column("revision", sa.String(64), primary_key=True),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # cache key (sha256 hex)
    sa.Column("digest", sa.String(64), nullable=False, index=True),  # artifact directory digest
    sa.Column("model_id", sa.String(255), nullable=False, index=True),
    sa.Column("revision", sa.String(64), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("primary_file", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of the primary file
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),  # files, converter, options, parity report
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the one writer
    cur.execute("PRAGMA busy_timeout=30000")  # concurrent zoo processes wait, not fail
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def get_engine(url: str) -> sa.Engine:
    """One engine per URL per process; creates the schema on first use."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
        with _schema_lock(url):
            try:
                metadata.create_all(engine, checkfirst=True)
            except sa.exc.DatabaseError:  # another process created the same tables meanwhile (PostgreSQL)
                metadata.create_all(engine, checkfirst=True)
        _engines[url] = engine
        return engine


def _schema_lock(url: str):
    """Concurrent first runs on one SQLite file: one creates the schema, the others then see it
    (without it, 8 fresh `zoo pull`s race to CREATE TABLE). Other databases: the retry above."""
    import contextlib

    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(url.removeprefix("sqlite:///") + ".schema.lock")


def get_meta(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()


def set_meta(conn: sa.Connection, key: str, value: str) -> None:
    conn.execute(sa.delete(meta).where(meta.c.key == key))
    conn.execute(sa.insert(meta).values(key=key, value=value))
