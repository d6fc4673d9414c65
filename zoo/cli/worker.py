"""``zoo worker``: the distributed half of the command line (remote ``zoo pull`` lives in ``zoo.remote``)."""

from __future__ import annotations

import argparse

from zoo import errors
from zoo.errors import EXIT_OK
from zoo.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run queued jobs from the broker (ZOO_DISPATCHER=celery deployments)")
    worker.add_argument("--concurrency", "-c", type=int,
                        help="jobs at a time, each in its own process (default: ZOO_WORKERS or 1)")
    worker.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise errors.UsageError("--concurrency must be 1 or more")
    from zoo.worker import run_worker

    run_worker(settings, args.concurrency, args.log_level)
    return EXIT_OK
