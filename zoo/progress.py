"""Progress for long work: stage lines on a terminal, silence otherwise.

Stages are reported to an optional callback too, so the job service can store
them; the CLI's ``--json`` mode stays quiet on stderr unless it is a terminal.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, TextIO


class Progress:
    def __init__(self, *, enabled: bool | None = None, stream: TextIO | None = None,
                 callback: Callable[[str, str], None] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.callback = callback
        self.notes: list[str] = []

    @property
    def downloads_visible(self) -> bool:
        return self.enabled

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        start = time.perf_counter()
        if self.callback:
            self.callback(name, "started")
        if self.enabled:
            self.stream.write(f"zoo: {name}{' ' + detail if detail else ''}...\n")
            self.stream.flush()
        yield
        elapsed = time.perf_counter() - start
        if self.callback:
            self.callback(name, "done")
        if self.enabled:
            self.stream.write(f"zoo: {name} done in {elapsed:.1f}s\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        """Something the user should know even when not on a terminal."""
        self.notes.append(message)
        self.stream.write(f"zoo: note: {message}\n")
        self.stream.flush()


def quiet() -> Progress:
    import io

    return Progress(enabled=False, stream=io.StringIO())
