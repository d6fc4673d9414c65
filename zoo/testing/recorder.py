"""Where ``zoo.testing`` leaves the reports it made, for the pytest plugin to attach to the test's report.

Standard library only: the plugin imports this in every pytest process."""

from __future__ import annotations

from typing import Any

_records: list[dict[str, Any]] | None = None


def start() -> list[dict[str, Any]]:
    """Collect from now on; the list fills as reports are made."""
    global _records
    _records = []
    return _records


def stop() -> None:
    global _records
    _records = None


def record(label: str, properties: dict[str, str], text: str) -> None:
    """A report: its figures as flat ``zoo.*`` properties and a few lines for people. A no-op outside
    a test run by the plugin."""
    if _records is not None:
        _records.append({"label": label, "properties": properties, "text": text})
