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
        if _json_stream is not None:
            _json_stream.flush()
            _json_stream = None


def print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), file=_json_stream or sys.stdout, flush=True)


def emit(args: argparse.Namespace, obj: Any, text: str) -> None:
    """``obj`` as JSON with --json, else ``text``."""
    if getattr(args, "json", False):
        print_json(obj)
    else:
        print(text)
