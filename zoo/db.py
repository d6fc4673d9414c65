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

# Accuracy on labelled data (zoo eval, zoo check): one row per subject (an artifact's digest, or a source
# model's id and commit) and evaluation (data set bytes, limit, tool versions). Kept beside the artifact,
# never inside it: an artifact's digest covers its files only, and an evaluation never changes them.
evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # sha256 of subject, data set, limit, versions
    sa.Column("digest", sa.String(64), index=True),  # the artifact's digest; NULL for a source model
    sa.Column("model_id", sa.String(255), nullable=False, index=True),
    sa.Column("revision", sa.String(64), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),  # "source" for the source model itself
    sa.Column("dataset_sha256", sa.String(64), nullable=False),
    sa.Column("report", sa.JSON, nullable=False),  # task, dataset, metrics, delta, agreement, predictions
    sa.Column("created_at", sa.Float, nullable=False),
)

# --- the job engine ----------------------------------------------------------
# Times are epoch seconds (float): portable across SQLite and PostgreSQL, and
# lease arithmetic stays plain subtraction.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, index=True),  # canonical request key
    # the key while queued or running, NULL once finished: one active job per key
    sa.Column("active_key", sa.String(64), unique=True),
    sa.Column("model", sa.String(400), nullable=False),  # as requested, with @revision
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # queued running succeeded failed canceled
    sa.Column("stage", sa.String(32)),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires", sa.Float, index=True),
    sa.Column("created_by", sa.String(32)),  # token id
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("started_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("error", sa.JSON),
    sa.Column("result", sa.JSON),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # state, stage, note
    sa.Column("data", sa.JSON, nullable=False),
)

# Idempotency-Key -> the job it created or joined, scoped per token.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),  # "<token id>:<Idempotency-Key>"
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("request_key", sa.String(64), nullable=False),  # the same key must carry the same request
    sa.Column("created_at", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public part of the token
    sa.Column("secret_sha256", sa.String(64), nullable=False),  # never the secret itself
    sa.Column("scope", sa.String(16), nullable=False),  # read | write | admin
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
)

# Directory artifacts download as one deterministic tar; its sha256 names it.
archives = sa.Table(
    "archives",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, index=True),  # artifact directory digest
    sa.Column("size", sa.BigInteger, nullable=False),
)

# Workers that run jobs from the broker (zoo worker): each beats its row while it runs, so /readyz can say
# whether any is alive. Rows of workers not seen for a day are pruned by the sweeper.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),  # host:pid:nonce
    sa.Column("queue", sa.String(100), nullable=False, index=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
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
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:  # unparseable, or no such dialect or driver
            raise _config_error(url, f"is not a database URL zoo can use ({type(exc).__name__}: {exc})") from exc
        with _schema_lock(url):
            try:
                metadata.create_all(engine, checkfirst=True)
            except sa.exc.OperationalError as exc:  # no server there, no such database, refused credentials
                if not _connects(engine):
                    engine.dispose()
                    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
                    raise _config_error(url, f"leads to no database: {reason}") from exc
                metadata.create_all(engine, checkfirst=True)  # another process created the tables meanwhile
            except sa.exc.DatabaseError:  # another process created the same tables meanwhile (PostgreSQL)
                metadata.create_all(engine, checkfirst=True)
        _engines[url] = engine
        return engine


def _connects(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False


def _config_error(url: str, what: str) -> Exception:
    from zoo.errors import ConfigError

    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        shown = url.split("@")[-1] if "@" in url else url  # never echo what may be a password
    return ConfigError(f"ZOO_DATABASE_URL={shown!r} {what}",
                       hint="fix ZOO_DATABASE_URL (e.g. postgresql+psycopg://USER@HOST:5432/DB, or unset it for "
                            "SQLite under ZOO_HOME) and check that the database server runs")


def dispose_engine(url: str) -> None:
    """Close and forget the engine for ``url`` (tests dropping a database, workers after fork)."""
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def _schema_lock(url: str):
    """Concurrent first runs on one SQLite file: one creates the schema, the others then see it
    (without it, 8 fresh `zoo pull`s race to CREATE TABLE). Other databases: the retry above."""
    import contextlib

    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(url.removeprefix("sqlite:///") + ".schema.lock")


def upsert(conn: sa.Connection, table: sa.Table, rows: list[dict], *, update: bool = True) -> None:
    """Insert ``rows``, replacing (or, with ``update=False``, keeping) rows with the same primary key.

    One statement (``INSERT ... ON CONFLICT``), so concurrent writers of the same
    key never fail: with PostgreSQL's row locks a delete-then-insert pair would
    raise a unique violation in the second of two concurrent transactions.
    """
    if not rows:
        return
    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # another database: the portable (not concurrency-safe) form
        keys = [c for c in table.primary_key.columns]
        for row in rows:
            conn.execute(sa.delete(table).where(sa.and_(*(c == row[c.name] for c in keys))))
        conn.execute(sa.insert(table), rows)
        return
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={c: stmt.excluded[c] for c in rows[0] if c not in keys})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt, rows)


def get_meta(conn: sa.Connection, key: str) -> str | None:
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()


def set_meta(conn: sa.Connection, key: str, value: str) -> None:
    upsert(conn, meta, [{"key": key, "value": value}])
