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
    worker.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics of this worker on this port (default: ZOO_WORKER_METRICS_PORT; "
                             "0: off)")
    prune = sub.add_parser("prune", help="delete finished jobs, job events, Idempotency-Keys and job logs past their "
                                         "retention (ZOO_KEEP_*_DAYS); evict local copies of S3 artifacts past "
                                         "ZOO_LOCAL_CACHE_MB")
    prune.add_argument("--json", action="store_true", help="print what was deleted as JSON")
    prune.set_defaults(handler=cmd_prune)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise errors.UsageError("--concurrency must be 1 or more")
    from dataclasses import replace

    from zoo.worker import run_worker

    if args.metrics_port is not None:
        settings = replace(settings, worker_metrics_port=args.metrics_port)

    run_worker(settings, args.concurrency, args.log_level)
    return EXIT_OK


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """What the housekeeping thread of ``zoo serve`` and ``zoo worker`` does, once, now."""
    from zoo import db
    from zoo.cli.output import emit
    from zoo.service.jobs import JobService
    from zoo.service.ops import Housekeeper

    jobs = JobService(db.get_engine(settings.database_url), lease_s=settings.lease_s)
    report = Housekeeper(settings, jobs).run_once()
    pruned, local = report["pruned"], report["local_cache"]
    emit(args, report, f"pruned {pruned['jobs']} job(s), {pruned['events']} event(s), "
                       f"{pruned['idempotency_keys']} Idempotency-Key(s), {pruned['logs']} job log(s); evicted "
                       f"{local['evicted']} local artifact cop(ies), {local['evicted_bytes']} bytes")
    return EXIT_OK
