"""Named pause points for the crash tests: inert unless ``ZOO_TEST_PAUSE_AT`` is set.

A test that wants to SIGKILL a pull in the middle of, say, publishing sets
``ZOO_TEST_PAUSE_AT=publish.staged`` (and ``ZOO_TEST_HOOK_DIR``); when the
process reaches that point it writes ``<dir>/<stage>.<pid>`` and sleeps
``ZOO_TEST_PAUSE_S`` seconds, so the test knows exactly where the kill lands.

Stages: ``fetch.downloaded`` (files fetched, before conversion), ``convert.exported``
(the chain wrote its files into staging), ``publish.staged`` (hashed and
manifest written, before the rename), ``publish.renamed`` (visible in the store,
not yet in the index).
"""

from __future__ import annotations

import os
import time

_STAGES = None


def pause_at(stage: str) -> None:
    """Sleep at ``stage`` when the test settings name it; otherwise do nothing."""
    global _STAGES
    if _STAGES is None:
        from zoo.settings import get_settings

        settings = get_settings()
        _STAGES = (frozenset(s.strip() for s in (settings.test_pause_at or "").split(",") if s.strip()),
                   settings.test_pause_s, settings.test_hook_dir)
    stages, seconds, marker_dir = _STAGES
    if stage not in stages:
        return
    if marker_dir is not None:
        marker_dir.mkdir(parents=True, exist_ok=True)
        (marker_dir / f"{stage}.{os.getpid()}").write_text(str(time.time()))
    time.sleep(seconds)
