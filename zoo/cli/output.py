"""How the command line writes its answers: a text for people, or with ``--json`` exactly one JSON object
on stdout for machines."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Iterator

_json_stream = None  # the real stdout while --json keeps native chatter off it


@contextlib.contextmanager
def json_output(enabled: bool) -> Iterator[None]:
    """With --json, stdout carries exactly one JSON object. Native libraries (TFLite's delegate notice,
    say) print to file descriptor 1 directly, so fd 1 points at stderr while zoo works, and the JSON goes
    to the saved stdout."""
    global _json_stream
    if enabled:
        sys.stdout.flush()
        _json_stream = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    try:
        yield
    finally:
        stream, _json_stream = _json_stream, None
        if stream is not None:
            try:
                stream.close()
            except BrokenPipeError:  # the reader went away: main() says so with its exit status
                pass


class ReaderGone(Exception):
    """Whoever read stdout stopped reading (``zoo list | head``): not an error of zoo's."""


def say(text: str, stream: Any = None) -> None:
    """Print ``text`` on stdout (or ``stream``); a closed pipe becomes :class:`ReaderGone`."""
    try:
        print(text, file=stream or sys.stdout, flush=True)
    except BrokenPipeError as exc:
        raise ReaderGone() from exc


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def print_json(obj: Any) -> None:
    say(json.dumps(obj, default=str), _json_stream or sys.stdout)


def emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    """``obj`` as JSON with --json, else ``text``."""
    if getattr(args, "json", False):
        print_json(obj)
    else:
        say(text)
