"""One job attempt in a process of its own.

    python -m zoo.runner --job ID --events-fd N --parent PID --spec JSON

(``zoo.service.execution.runner_command`` starts it so that the working directory
cannot shadow the installed zoo.)

The supervisor (``zoo.service.execution``) starts this in a new session, so killing the
process group stops the conversion wherever it is, native exporter code
included, and gives its memory back. Here the process limits its own address
space (``ZOO_JOB_MEMORY_MB``), asks the kernel to kill it when its parent dies,
runs ``zoo.pipeline.pull`` and reports on file descriptor N, one JSON object
per line: ``stage`` and ``note`` while it works, then ``result`` or ``error``.

``--index-catalogs`` instead indexes timm's catalog, so that the API process
never imports timm (and torch) to do it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Any, Callable

from zoo.progress import Progress
from zoo.settings import Settings

# How far along a job is when a stage starts (the stages of zoo.pipeline and zoo.converters.graph).
STAGE_PROGRESS = {"resolve": 0.02, "fetch": 0.05, "load": 0.2, "export": 0.4, "convert": 0.6, "parity": 0.75,
                  "locate": 0.9, "publish": 0.95}


class EventProgress(Progress):
    """Progress that also sends stages and notes to the supervisor."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__(enabled=True, stream=sys.stderr, callback=self._on_stage)
        self.send = send

    def _on_stage(self, name: str, status: str) -> None:
        if status == "started":
            self.send("stage", stage=name, progress=STAGE_PROGRESS.get(name, 0.5))

    def note(self, message: str) -> None:
        super().note(message)
        self.send("note", message=message)


def limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the supervisor's thread goes away (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's kill is the only stop
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_job(spec: dict[str, Any], settings: Settings, send: Callable[..., None]) -> int:
    try:  # imports too: a broken install is the job's error, not a silent crash
        from zoo.pipeline import pull
        from zoo.service.jobs import JobRequest

        request = JobRequest(**spec)
        result = pull(request.name, request.pull_options(), settings=settings, progress=EventProgress(send))
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's error
        from zoo.errors import ZooError, as_storage_error, exit_code_for
        from zoo.service.jobs import error_dict

        exc = as_storage_error(exc)  # a full disk is storage_full (507), whatever library wrapped it
        if not isinstance(exc, ZooError):  # unexpected: the traceback goes to the job's log
            traceback.print_exc(file=sys.stderr)
        error = error_dict(exc)
        if settings.job_memory_mb and isinstance(exc, (MemoryError, ImportError, OSError)):
            error["hint"] = (f"the job ran with a memory limit of {settings.job_memory_mb} MiB; raise "
                             "ZOO_JOB_MEMORY_MB if the conversion needs more")
        send("error", error=error)
        return exit_code_for(exc)
    send("result", result=result.to_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.runner")
    parser.add_argument("--job")
    parser.add_argument("--events-fd", type=int)
    parser.add_argument("--parent", type=int)
    parser.add_argument("--spec")
    parser.add_argument("--index-catalogs", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.parent:
        die_with_parent(args.parent)
    if args.index_catalogs:
        from zoo.registry.index import Registry

        registry = Registry(settings)
        registry.ensure_timm_catalog(quiet=True)
        registry.ensure_keras_catalog()
        return 0
    limit_memory(settings.job_memory_mb)
    out = os.fdopen(args.events_fd, "w", buffering=1, encoding="utf-8")

    def send(kind: str, **data: Any) -> None:
        out.write(json.dumps({"kind": kind, **data}, default=str) + "\n")
        out.flush()

    code = run_job(json.loads(args.spec), settings, send)
    out.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
