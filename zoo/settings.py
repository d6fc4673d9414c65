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
        )


def get_settings() -> Settings:
    """Settings for this process, read from the current environment."""
    return Settings.from_env()
