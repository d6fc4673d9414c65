"""Progress for long work: a line on stderr when each stage starts and ends, piped or not.

Download bars are drawn only on a terminal; when stderr is not one (a pipe, a CI log), a stage that
runs long also says every ``HEARTBEAT_S`` seconds that it is still running, so a minute of work is
never a minute of silence. Stages are reported to an optional callback too, so the job service can
store them. ``--json`` keeps stdout to its one object; these lines go to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

HEARTBEAT_S = 30.0


class Progress:
    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None,
                 callback: Callable[[str, str], None] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.callback = callback
        self.notes: list[str] = []
        self.terminal = self.enabled and _isatty(self.stream)

    @property
    def downloads_visible(self) -> bool:
        """Progress bars redraw one line: only a terminal shows them as meant."""
        return self.terminal

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        start = time.perf_counter()
        if self.callback:
            self.callback(name, "started")
        if self.enabled:
            self.stream.write(f"zoo: {name}{' ' + detail if detail else ''}...\n")
            self.stream.flush()
        done = threading.Event()
        if self.enabled and not self.terminal:
            threading.Thread(target=self._heartbeat, args=(name, start, done), daemon=True).start()
        try:
            yield
        finally:
            done.set()
        elapsed = time.perf_counter() - start
        if self.callback:
            self.callback(name, "done")
        if self.enabled:
            self.stream.write(f"zoo: {name} done in {elapsed:.1f}s\n")
            self.stream.flush()

    def _heartbeat(self, name: str, start: float, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_S):
            try:
                self.stream.write(f"zoo: {name} still running ({time.perf_counter() - start:.0f}s)\n")
                self.stream.flush()
            except (OSError, ValueError):  # the reader went away, or the stream was closed
                return

    def meter(self, total: int, label: str) -> Callable[[int], None]:
        """A byte counter for a transfer of ``total`` bytes: call it with each chunk's size. On a terminal
        it redraws one line (done / total MB, percent, rate) at most ten times a second and ends it when
        the count reaches ``total``; elsewhere it draws nothing (the stage lines and heartbeat say enough)."""
        if not self.terminal or total <= 0:
            return lambda n: None
        state = {"done": 0, "drawn": 0.0, "start": time.perf_counter()}

        def advance(n: int) -> None:
            state["done"] += n
            now = time.perf_counter()
            finished = state["done"] >= total
            if not finished and now - state["drawn"] < 0.1:
                return
            state["drawn"] = now
            rate = state["done"] / max(now - state["start"], 1e-6) / 1e6
            self.stream.write(f"\rzoo: {label} {state['done'] / 1e6:.1f}/{total / 1e6:.1f} MB "
                              f"({100 * state['done'] / total:.0f}%) {rate:.1f} MB/s" + ("\n" if finished else ""))
            self.stream.flush()

        return advance

    def note(self, message: str) -> None:
        """Something the user should know even when not on a terminal."""
        self.notes.append(message)
        self.stream.write(f"zoo: note: {message}\n")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def quiet() -> Progress:
    import io

    return Progress(enabled=False, stream=io.StringIO())
