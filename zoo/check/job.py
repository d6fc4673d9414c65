"""``python -m zoo.check.job``: one check of ``zoo check`` in its own process.

Reads the check (``Check.to_job()``) as JSON on stdin and writes its row as one JSON line on stdout.
A process per check keeps a crash, a leak or a framework's global state inside one row, and lets
``zoo.check.run`` measure each check's peak memory."""

from __future__ import annotations

import json
import sys


def main() -> int:
    from zoo.check.checks import run_check
    from zoo.cli.output import json_output, print_json
    from zoo.settings import get_settings

    job = json.loads(sys.stdin.read())
    with json_output(True):  # native libraries' chatter goes to stderr; stdout carries the row only
        print_json(run_check(job, get_settings()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
