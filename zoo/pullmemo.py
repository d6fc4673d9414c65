"""The fast path of a repeated ``zoo pull``: no database, no framework.

After a successful pull zoo remembers, per request (name, revision, canonical
options, converter and timm versions, endpoint), the commit it resolved to and
the artifact it produced (``ZOO_HOME/pulls/<fingerprint>.json``). The next identical request asks only "is the commit
still the same?" (the ``refs/`` file offline; one GET of the hub's revision
endpoint online; for a local import, its current revision in the registry; a
Keras application's revision is fixed by the keras version, part of the
fingerprint) and, if so and the artifact's files are intact, answers from
the artifact's own manifest. Anything else (a new commit, a removed artifact, a
hub error) falls through to the full pipeline, which decides and reports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zoo.hashing import sha256_json
from zoo.registry.hf_source import COMMIT_RE, cached_commit
from zoo.settings import Settings


def fingerprint(name: str, revision: str | None, canonical: dict[str, Any], versions: dict[str, str]) -> str:
    # no endpoint: a mirror serving the same commit serves the same bytes; the commit check decides
    return sha256_json({"name": name, "revision": revision, "options": canonical, "versions": versions})


def _path(settings: Settings, fp: str) -> Path:
    return settings.home / "pulls" / f"{fp}.json"


def remember(settings: Settings, fp: str, memo: dict[str, Any]) -> None:
    path = _path(settings, fp)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, path)


def recall(settings: Settings, fp: str) -> dict[str, Any] | None:
    try:
        return json.loads(_path(settings, fp).read_text())
    except (OSError, ValueError):
        return None


def current_revision(memo: dict[str, Any], revision: str | None, settings: Settings) -> str | None:
    """The revision the memo's source is at now (None when unsure), for each kind of source that keeps one."""
    if memo.get("local"):
        from zoo.registry.index import Registry

        record = Registry(settings).get(f"local/{memo['local']}")
        return None if record is None else record.revision
    if memo.get("fixed"):  # a Keras application: keras' version (in the fingerprint) fixes which weights file
        try:
            st = os.stat(memo["file"])
        except (KeyError, OSError):
            return None
        return memo["commit"] if [st.st_size, st.st_mtime_ns, st.st_ino] == memo.get("stat") else None
    return current_commit(memo["repo_id"], revision, settings) if memo.get("repo_id") else None


def current_commit(repo_id: str, revision: str | None, settings: Settings) -> str | None:
    """The commit ``repo_id@revision`` points at now, or None when unsure."""
    revision = revision or "main"
    if settings.hf_offline or COMMIT_RE.match(revision):
        return cached_commit(repo_id, revision, settings.hf_hub_cache)
    try:  # huggingface_hub's own session: same proxies, certificates, token and user agent
        from huggingface_hub.utils import (
            build_hf_headers,
            get_session,
            hf_raise_for_status,
        )

        url = f"{settings.hf_endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
        response = get_session().get(url, headers=build_hf_headers(token=settings.hf_token), timeout=10)
        hf_raise_for_status(response)
        sha = response.json().get("sha")
        return sha if isinstance(sha, str) and COMMIT_RE.match(sha) else None
    except Exception:  # noqa: BLE001 - any doubt: the full pipeline decides and reports
        return None
