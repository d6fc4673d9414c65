"""Every environment variable zoo reads, read in one place.

zoo's own settings use the ``ZOO_`` prefix. The Hugging Face variables
(``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``)
keep the meaning huggingface_hub gives them; zoo reads them here and passes them
explicitly to huggingface_hub calls, so a changed environment is honoured even
after huggingface_hub was imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in _TRUE


def _number(env: dict[str, str], name: str, default: float, *, minimum: float = 0, integer: bool = True) -> float:
    """A numeric ZOO_* variable; a bad value stops with a message naming it."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        from zoo.errors import UsageError

        kind = "an integer" if integer else "a number"
        raise UsageError(f"{name}={value!r} is not {kind} >= {minimum:g}", hint=f"fix or unset {name}")
    return number


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        from zoo.errors import UsageError

        raise UsageError(f"{name}={value!r} is not one of {', '.join(choices)}", hint=f"fix or unset {name}")
    return value


def _name(env: dict[str, str], name: str, default: str) -> str:
    """A plain identifier (letters, digits, ``-_.``), as queue and key names need."""
    value = (env.get(name) or default).strip()
    if not value or not all(c.isalnum() or c in "-_." for c in value) or len(value) > 100:
        from zoo.errors import UsageError

        raise UsageError(f"{name}={value!r} is not a plain name (letters, digits, '-', '_', '.')",
                         hint=f"fix or unset {name}")
    return value


def _default_zoo_home() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("zoo", appauthor=False))


@dataclass(frozen=True)
class Settings:
    # --- zoo's own state ---
    home: Path  # ZOO_HOME: artifact store, registry database, locks
    database_url: str  # ZOO_DATABASE_URL: SQLAlchemy URL (default SQLite under home)
    debug: bool  # ZOO_DEBUG: show tracebacks
    # --- Hugging Face hub ---
    hf_hub_cache: Path  # HF_HUB_CACHE, else HF_HOME/hub
    hf_endpoint: str  # HF_ENDPOINT
    hf_offline: bool  # HF_HUB_OFFLINE
    hf_token: str | None  # HF_TOKEN (None: huggingface_hub may still use a saved token)
    # --- Keras applications' weights (keras' own cache: KERAS_HOME/models) ---
    keras_home: Path = Path("~/.keras").expanduser()  # KERAS_HOME
    # --- the service (zoo serve) ---
    host: str = "127.0.0.1"  # ZOO_HOST
    port: int = 8000  # ZOO_PORT
    read_auth: bool = False  # ZOO_READ_AUTH: reads need a token with the read scope too
    max_body_bytes: int = 64 * 1024  # ZOO_MAX_BODY_BYTES: larger request bodies get 413
    dispatcher: str = "local"  # ZOO_DISPATCHER: "local" (worker pool inside zoo serve) | "celery" (zoo worker)
    storage: str = "local"  # ZOO_STORAGE: where artifact bytes live ("local": ZOO_HOME | "s3": a bucket)
    # --- distributed: Celery workers, S3-compatible storage, remote CLI ---
    broker_url: str = "redis://127.0.0.1:6379/0"  # ZOO_BROKER_URL: the Celery broker (Redis)
    queue: str = "zoo"  # ZOO_QUEUE: the job queue's name, and the prefix of every broker key zoo uses
    s3_bucket: str | None = None  # ZOO_S3_BUCKET (credentials: the usual AWS_* variables, read by boto3)
    s3_endpoint_url: str | None = None  # ZOO_S3_ENDPOINT_URL: an S3-compatible server (default: AWS)
    server: str | None = None  # ZOO_SERVER: a zoo serve URL; `zoo pull` then runs there (remote mode)
    token: str | None = None  # ZOO_TOKEN: the API token remote mode sends
    # --- the job engine ---
    workers: int = 1  # ZOO_WORKERS: jobs at a time of zoo serve's local pool (0: it only queues) or of zoo worker
    job_timeout_s: float = 3600.0  # ZOO_JOB_TIMEOUT: wall-clock limit of one attempt, then killed
    job_memory_mb: int = 0  # ZOO_JOB_MEMORY_MB: address-space limit of a job process (0: none; default: see below)
    job_attempts: int = 3  # ZOO_JOB_ATTEMPTS: attempts before a job whose worker keeps dying fails
    lease_s: float = 30.0  # ZOO_JOB_LEASE: a claim lapses this long after the last heartbeat
    resend_after_s: float = 0.0  # ZOO_JOB_RESEND_S: a queued job whose broker message is gone is sent again
    #   after this long untouched (0: one sweep, half a lease)
    # --- operations: retention (days; 0 keeps forever) and the worker-local copies of S3 artifacts ---
    keep_jobs_days: float = 30.0  # ZOO_KEEP_JOBS_DAYS: finished jobs, their events and logs
    keep_events_days: float = 7.0  # ZOO_KEEP_EVENTS_DAYS: events of finished jobs (the job row stays)
    keep_idempotency_days: float = 1.0  # ZOO_KEEP_IDEMPOTENCY_DAYS: Idempotency-Key records
    local_cache_mb: int = 0  # ZOO_LOCAL_CACHE_MB: a worker's local copies of artifacts the bucket holds (0: no cap)
    worker_metrics_port: int = 0  # ZOO_WORKER_METRICS_PORT: zoo worker serves Prometheus metrics there (0: off)
    # Not from the environment: the server turns it off so that the API process never
    # imports timm (and torch) to index a catalog; it indexes in a child process instead.
    index_catalogs: bool = True
    # --- downloads ---
    download_retries: int = 3  # ZOO_DOWNLOAD_RETRIES: attempts after the first, per file
    download_backoff_s: float = 1.0  # ZOO_DOWNLOAD_BACKOFF_S: first wait; doubles per attempt
    # --- archives imported with `zoo import ARCHIVE` ---
    archive_max_bytes: int = 64 << 30  # ZOO_ARCHIVE_MAX_BYTES: total extracted size
    archive_max_ratio: float = 200.0  # ZOO_ARCHIVE_MAX_RATIO: extracted / archive size
    archive_max_members: int = 10_000  # ZOO_ARCHIVE_MAX_MEMBERS
    archive_max_header_bytes: int = 1 << 20  # ZOO_ARCHIVE_MAX_HEADER_BYTES: one pax header or GNU long name
    # --- safetensors headers (checked before any framework reads the file) ---
    safetensors_max_header_bytes: int = 16 << 20  # ZOO_SAFETENSORS_MAX_HEADER_BYTES
    safetensors_max_tensors: int = 100_000  # ZOO_SAFETENSORS_MAX_TENSORS: entries in one file's header
    flax_max_bytes: int = 64 << 30  # ZOO_FLAX_MAX_BYTES: a Flax msgpack file or orbax directory, in all
    # --- test hooks (inert unless set; used by the crash tests) ---
    test_pause_at: str | None = None  # ZOO_TEST_PAUSE_AT: stage name(s), comma-separated
    test_pause_s: float = 0.0  # ZOO_TEST_PAUSE_S: how long to sleep there
    test_hook_dir: Path | None = None  # ZOO_TEST_HOOK_DIR: where "<stage>.<pid>" markers are written

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env["ZOO_HOME"]).expanduser() if env.get("ZOO_HOME") else _default_zoo_home()
        hf_home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "huggingface").expanduser()
        hub_cache = Path(env["HF_HUB_CACHE"]).expanduser() if env.get("HF_HUB_CACHE") else hf_home / "hub"
        return cls(
            home=home,
            database_url=env.get("ZOO_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}",
            debug=_flag(env, "ZOO_DEBUG"),
            hf_hub_cache=hub_cache,
            hf_endpoint=(env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/"),
            hf_offline=_flag(env, "HF_HUB_OFFLINE"),
            hf_token=env.get("HF_TOKEN") or None,
            keras_home=Path(env.get("KERAS_HOME") or "~/.keras").expanduser(),
            host=env.get("ZOO_HOST") or "127.0.0.1",
            port=int(_number(env, "ZOO_PORT", 8000)),
            read_auth=_flag(env, "ZOO_READ_AUTH"),
            max_body_bytes=int(_number(env, "ZOO_MAX_BODY_BYTES", 64 * 1024, minimum=1)),
            dispatcher=_choice(env, "ZOO_DISPATCHER", "local", ("local", "celery")),
            storage=_choice(env, "ZOO_STORAGE", "local", ("local", "s3")),
            broker_url=env.get("ZOO_BROKER_URL") or "redis://127.0.0.1:6379/0",
            queue=_name(env, "ZOO_QUEUE", "zoo"),
            s3_bucket=env.get("ZOO_S3_BUCKET") or None,
            s3_endpoint_url=env.get("ZOO_S3_ENDPOINT_URL") or None,
            server=(env.get("ZOO_SERVER") or "").strip().rstrip("/") or None,
            token=env.get("ZOO_TOKEN") or None,
            workers=int(_number(env, "ZOO_WORKERS", 1)),
            job_timeout_s=_number(env, "ZOO_JOB_TIMEOUT", 3600.0, minimum=1, integer=False),
            job_memory_mb=int(_number(env, "ZOO_JOB_MEMORY_MB", default_job_memory_mb())),
            job_attempts=int(_number(env, "ZOO_JOB_ATTEMPTS", 3, minimum=1)),
            lease_s=_number(env, "ZOO_JOB_LEASE", 30.0, minimum=1, integer=False),
            resend_after_s=_number(env, "ZOO_JOB_RESEND_S", 0.0, integer=False),
            keep_jobs_days=_number(env, "ZOO_KEEP_JOBS_DAYS", 30.0, integer=False),
            keep_events_days=_number(env, "ZOO_KEEP_EVENTS_DAYS", 7.0, integer=False),
            keep_idempotency_days=_number(env, "ZOO_KEEP_IDEMPOTENCY_DAYS", 1.0, integer=False),
            local_cache_mb=int(_number(env, "ZOO_LOCAL_CACHE_MB", 0)),
            worker_metrics_port=int(_number(env, "ZOO_WORKER_METRICS_PORT", 0)),
            download_retries=int(_number(env, "ZOO_DOWNLOAD_RETRIES", 3)),
            download_backoff_s=_number(env, "ZOO_DOWNLOAD_BACKOFF_S", 1.0, integer=False),
            archive_max_bytes=int(_number(env, "ZOO_ARCHIVE_MAX_BYTES", 64 << 30, minimum=1)),
            archive_max_ratio=_number(env, "ZOO_ARCHIVE_MAX_RATIO", 200.0, minimum=1, integer=False),
            archive_max_members=int(_number(env, "ZOO_ARCHIVE_MAX_MEMBERS", 10_000, minimum=1)),
            archive_max_header_bytes=int(_number(env, "ZOO_ARCHIVE_MAX_HEADER_BYTES", 1 << 20, minimum=512)),
            safetensors_max_header_bytes=int(_number(env, "ZOO_SAFETENSORS_MAX_HEADER_BYTES", 16 << 20, minimum=2)),
            safetensors_max_tensors=int(_number(env, "ZOO_SAFETENSORS_MAX_TENSORS", 100_000, minimum=1)),
            flax_max_bytes=int(_number(env, "ZOO_FLAX_MAX_BYTES", 64 << 30, minimum=1)),
            test_pause_at=env.get("ZOO_TEST_PAUSE_AT") or None,
            test_pause_s=_number(env, "ZOO_TEST_PAUSE_S", 0.0, integer=False),
            test_hook_dir=Path(env["ZOO_TEST_HOOK_DIR"]) if env.get("ZOO_TEST_HOOK_DIR") else None,
        )


def default_job_memory_mb() -> int:
    """A job's default address-space limit: three quarters of the machine's memory, and never under
    8 GiB (importing TensorFlow and torch alone maps about 5.5 GB); 0 (none) where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (AttributeError, ValueError, OSError):
        return 0
    return max(8192, total * 3 // 4) if total > 0 else 0


def quiet_openmp(env: dict[str, str] | None = None) -> None:
    """OpenMP threads that sleep when they have no work (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose
    otherwise. Parity alternates PyTorch and onnxruntime in one process, and libgomp's default spin after
    each parallel region takes the cores from onnxruntime's threads and from other processes: on 2 loaded
    cores a 2048x5632 ``Linear`` of a decode step took 21 ms of CPU spinning against 4 ms passive, and a
    1.1B Llama's generation check ran 3x longer (bench/README.md, ``bench_llm.py``). libgomp reads the
    variable once, when torch is imported, so the ``zoo`` process calls this first (``zoo.cli.main.tune_process``;
    a program that calls ``main(argv)`` keeps its own environment)."""
    env = os.environ if env is None else env
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def get_settings() -> Settings:
    """Settings for this process, read from the current environment."""
    return Settings.from_env()


def unsafe_torch_override(env: dict[str, str] | None = None) -> str | None:
    """The PyTorch variable that would weaken ``torch.load(weights_only=True)``, if set.

    Not a zoo setting: it is read here so that every environment variable zoo
    looks at is read in one place."""
    env = os.environ if env is None else env
    name = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    return name if _flag(dict(env), name) else None
