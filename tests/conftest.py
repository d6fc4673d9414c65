"""Shared fixtures: an isolated environment per test, tiny real model repos, and an offline hub.

huggingface_hub reads its environment once, at import (``huggingface_hub.constants``). Setting
``HF_HOME``/``HF_ENDPOINT`` only reaches subprocesses and code that reads the environment itself (zoo's
settings); so the fixtures below also point the already-imported constants at the test's directories
and hub, so that in-process library calls (timm, transformers) can never touch ~/.cache or the internet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from builders import (
    bert_repo,
    keras_repo,
    pickle_only_repo,
    timm_repo,
    vit_image_classifier_repo,
    write_hf_cache,
)
from hubserver import HubServer, Repo

REPO_ROOT = Path(__file__).resolve().parents[1]

# Set before anything imports huggingface_hub in this process (it reads them at import).
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

_DELETED_ENV = (
    "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "ZOO_DATABASE_URL", "ZOO_SERVER",
    # aliases that would defeat the isolation above
    "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH",
    "HF_OIDC_RESOURCE", "HF_ASSETS_CACHE", "HF_XET_CACHE",
)  # fmt: skip

TINY_REPO_BUILDERS = {
    "timm/test_resnet.r160_in1k": lambda: timm_repo("test_resnet.r160_in1k"),
    "timm/test_vit.r160_in1k": lambda: timm_repo("test_vit.r160_in1k"),
    "timm/test_efficientnet.r160_in1k": lambda: timm_repo("test_efficientnet.r160_in1k"),
    "zoo-test/tiny-bert": lambda: bert_repo("base"),
    "zoo-test/tiny-bert-sst": lambda: bert_repo("sequence-classification"),
    "zoo-test/tiny-vit-classifier": vit_image_classifier_repo,
    "zoo-test/pickle-only-resnet": pickle_only_repo,
    "zoo-test/tiny-keras": keras_repo,  # keras' hf:// layout: config.json + metadata.json + model.weights.h5
    "zoo-test/tiny-keras-file": lambda: keras_repo(layout="file"),  # one model.keras
}
GATED_REPO_ID = "zoo-test/gated-bert"  # a gated copy of zoo-test/tiny-bert


@dataclass(frozen=True)
class ZooEnv:
    home: Path  # ZOO_HOME
    hf_home: Path  # HF_HOME
    hub_cache: Path  # HF_HOME/hub


def _set_hf_constants(monkeypatch: pytest.MonkeyPatch, **values) -> None:
    """Point huggingface_hub's import-time constants at ``values`` (skipping any a version lacks)."""
    from huggingface_hub import constants

    for name, value in values.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)


def _point_shared_clients(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Shared HfApi instances captured the endpoint when created: huggingface_hub's module-level one
    (behind ``huggingface_hub.model_info`` & co.) and transformers' cached one."""
    from huggingface_hub import hf_api

    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    hub = sys.modules.get("transformers.utils.hub")
    if hub is not None and hasattr(hub, "_hf_api"):
        monkeypatch.setattr(hub, "_hf_api", None)


@pytest.fixture(autouse=True)
def zoo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ZooEnv:
    """Isolate every test: its own ZOO_HOME and HF_HOME, no endpoint, token or offline flag."""
    env = ZooEnv(home=tmp_path / "zoo", hf_home=tmp_path / "hf", hub_cache=tmp_path / "hf" / "hub")
    for name in _DELETED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(env.home))
    monkeypatch.setenv("HF_HOME", str(env.hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # keras' weights cache, never ~/.keras
    hf_home = str(env.hf_home)
    _set_hf_constants(
        monkeypatch,
        HF_HOME=hf_home,
        HF_HUB_CACHE=str(env.hub_cache),
        HUGGINGFACE_HUB_CACHE=str(env.hub_cache),
        HF_ASSETS_CACHE=os.path.join(hf_home, "assets"),
        HF_TOKEN_PATH=os.path.join(hf_home, "token"),
        HF_STORED_TOKENS_PATH=os.path.join(hf_home, "stored_tokens"),
        CHECK_FOR_UPDATE_DONE_PATH=os.path.join(hf_home, ".check_for_update_done"),
        AGENT_HARNESSES_PATH=os.path.join(hf_home, ".agent_harnesses.json"),
        HF_HUB_OFFLINE=False,
        HF_HUB_DISABLE_TELEMETRY=True,
        HF_HUB_DISABLE_PROGRESS_BARS=True,
    )
    return env


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3-compatible server (moto's, over HTTP) for one test module."""
    from distproc import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_repos() -> dict[str, dict[str, bytes]]:
    """Every tiny repo, built once per session (deterministic: same bytes, same commit each run)."""
    return {repo_id: build() for repo_id, build in TINY_REPO_BUILDERS.items()}


@pytest.fixture(scope="session")
def hub(tiny_repos: dict[str, dict[str, bytes]]):
    """A started HubServer with all tiny repos plus the gated ``zoo-test/gated-bert``."""
    repos = [Repo(repo_id, files) for repo_id, files in tiny_repos.items()]
    repos.append(Repo(GATED_REPO_ID, tiny_repos["zoo-test/tiny-bert"], gated=True))
    with HubServer(repos) as server:
        yield server


@pytest.fixture
def hub_endpoint(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this test (env and in-process huggingface_hub) at ``hub``; clears its request log."""
    hub.clear()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    _set_hf_constants(
        monkeypatch,
        ENDPOINT=hub.endpoint,
        HUGGINGFACE_CO_URL_TEMPLATE=hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    _point_shared_clients(monkeypatch, hub.endpoint)
    return hub.endpoint


@pytest.fixture
def cached_repo(zoo_env: ZooEnv, tiny_repos: dict[str, dict[str, bytes]]):
    """``(repo_id) -> snapshot Path``: write a tiny repo into this test's HF cache, as if downloaded."""

    def write(repo_id: str) -> Path:
        return write_hf_cache(zoo_env.hub_cache, repo_id, tiny_repos[repo_id])

    return write


def run_zoo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m zoo *args`` with the (fixture-patched) environment plus ``env``."""
    merged = {**os.environ, **(env or {})}
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), merged.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


# --- zoo-level helpers shared by the pull and graph tests -------------------------------------
TIMM_REPO = "timm/test_resnet.r160_in1k"


@pytest.fixture(scope="session")
def timm_index_db(tmp_path_factory) -> Path:
    """The timm catalog indexed once per session (3 s), copied into each test's ZOO_HOME."""
    home = tmp_path_factory.mktemp("index")
    from zoo.registry.index import Registry
    from zoo.settings import Settings

    settings = Settings.from_env({**os.environ, "ZOO_HOME": str(home)})
    registry = Registry(settings)
    registry.ensure_timm_catalog(quiet=True)
    with registry.engine.connect() as conn:  # fold SQLite's write-ahead log into the file we copy
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    registry.engine.dispose()
    return home / "registry.db"


@pytest.fixture
def indexed(zoo_env, timm_index_db):
    zoo_env.home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(timm_index_db, zoo_env.home / "registry.db")
    return zoo_env


def pull_json(*args: str, env: dict | None = None, code: int = 0) -> dict:
    proc = run_zoo("pull", *args, "--json", env=env)
    assert proc.returncode == code, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def source_outputs(files: dict[str, bytes], arch: str, x: np.ndarray) -> np.ndarray:
    """The real source model's output, built here independently of zoo."""
    import timm
    import torch
    from safetensors.torch import load as load_safetensors

    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(load_safetensors(files["model.safetensors"]))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def keras_weights() -> tuple[str, bytes]:
    from builders import keras_mobilenet_v2_weights

    return keras_mobilenet_v2_weights(96)


@pytest.fixture
def keras_cache(zoo_env, keras_weights) -> Path:
    """KERAS_HOME/models holding seeded MobileNetV2 weights, as keras' own download would leave them."""
    name, data = keras_weights
    path = Path(os.environ["KERAS_HOME"]) / "models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- services: PostgreSQL and Redis ----------------------------------------------------------
# A service the suite needs that cannot be reached FAILS the tests that need it: a skip would let
# ./scripts/test.sh exit 0 with half the job tests and every distributed test unrun. A developer
# without them may ask to skip those tests with ZOO_TEST_SKIP_SERVICES=1; CI (CI=true) never skips.
POSTGRES_URL = os.environ.get("ZOO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BROKER_URL = os.environ.get("ZOO_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
SKIP_SERVICES = "ZOO_TEST_SKIP_SERVICES"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def service_unreachable(service: str, url: str, variable: str, exc: BaseException):
    """Fail the current test because ``service`` is down, or skip it when the developer asked to."""
    what = f"{service} is not reachable at {url} ({type(exc).__name__}: {str(exc).strip()[:300]})"
    if _truthy(os.environ.get(SKIP_SERVICES)) and not _truthy(os.environ.get("CI")):
        pytest.skip(f"{what}; skipped because {SKIP_SERVICES}=1")
    ci = f" (CI=true: {SKIP_SERVICES} is ignored)" if _truthy(os.environ.get("CI")) else ""
    pytest.fail(f"{what}{ci}. Start it (.ci/run starts PostgreSQL and Redis where they are installed) or point "
                f"{variable} at one; to skip the tests that need it on a machine without it, set {SKIP_SERVICES}=1",
                pytrace=False)


def require_redis(url: str = BROKER_URL) -> None:
    """Redis answers at ``url`` (the Celery broker of the distributed tests), or the test fails."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        service_unreachable("Redis", url, "ZOO_TEST_BROKER_URL", exc)


# --- databases: the job engine runs on SQLite and on PostgreSQL -------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """A fresh, empty database per test: a SQLite file, or a new PostgreSQL schema (dropped after)."""
    from zoo import db

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        yield url
        db.dispose_engine(url)
        return
    with postgres_schema() as url:
        yield url


@contextlib.contextmanager
def postgres_schema(prefix: str = "zoo_test", server: str = POSTGRES_URL):
    """The URL of a new, empty PostgreSQL schema, dropped on exit; the test fails when PostgreSQL is down
    (see ``service_unreachable``)."""
    import uuid

    import sqlalchemy as sa

    from zoo import db

    admin = sa.create_engine(server, connect_args={"connect_timeout": 5})
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unreachable("PostgreSQL", server, "ZOO_TEST_POSTGRES_URL", exc.orig or exc)
    url = f"{server}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        db.dispose_engine(url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The hostile-file tally (tests/hostile.py), for the closing note; also written as JSON
    to ZOO_HOSTILE_REPORT when set."""
    import hostile

    if not hostile.OUTCOMES:
        return
    tally = hostile.summary()
    terminalreporter.write_line(f"hostile files: {tally['tried']} tried, {tally['refused']} refused, "
                                f"{tally['executed']} executed")
    report = os.environ.get("ZOO_HOSTILE_REPORT")
    if report:
        Path(report).write_text(json.dumps({**tally, "cases": hostile.OUTCOMES}, indent=1))
