"""Who runs queued jobs: the seam between the API and the workers.

The API only writes jobs to the table and tells the dispatcher that one was
queued. ``LocalPool`` (the embedded default of ``zoo serve``) keeps N threads
that claim jobs from the table and run each in its own process
(``zoo.service.execution.execute``). ``zoo.service.broker.CeleryDispatcher`` implements the same
methods for ``zoo worker`` processes (``ZOO_DISPATCHER=celery``); its workers
call the same ``execute``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any, Callable, Protocol

from zoo.service.execution import Outcome, execute
from zoo.service.jobs import Job, JobService
from zoo.settings import Settings
from zoo.storage.blobs import Storage

log = logging.getLogger("zoo.service.dispatch")
_POLL_S = 1.0  # also picks up jobs queued by another process, and lapsed leases


class Dispatcher(Protocol):
    def start(self) -> None:
        """Begin running queued jobs (including those left by an earlier run)."""

    def submitted(self, job: Job) -> None:
        """A job was queued (or joined); start it soon."""

    def stop(self) -> None:
        """Stop taking jobs; jobs in progress go back to the queue."""

    def status(self) -> dict[str, Any]:
        """What /readyz reports: {"ready": bool, ...}."""


OutcomeHook = Callable[[Job, Outcome], None]


class LocalPool:
    """``workers`` threads in this process, each supervising one job process at a time."""

    def __init__(self, settings: Settings, jobs: JobService, storage: Storage,
                 on_outcome: OutcomeHook | None = None) -> None:
        self.settings = settings
        self.jobs = jobs
        self.storage = storage
        self.on_outcome = on_outcome
        self.size = settings.workers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy = 0
        self._lock = threading.Lock()
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._loop, args=(f"{self.instance}:{i}",), name=f"zoo-worker-{i}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def submitted(self, job: Job) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def status(self) -> dict[str, Any]:
        alive = sum(t.is_alive() for t in self._threads)
        return {"ready": alive == self.size and not self._stop.is_set(), "dispatcher": "local", "workers": self.size,
                "alive": alive, "busy": self.busy}

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                job = self.jobs.claim(owner)
                if job is None:
                    self._wake.wait(_POLL_S)
                    self._wake.clear()
                    continue
                with self._lock:
                    self.busy += 1
                try:
                    outcome = execute(job, self.jobs, self.storage, self.settings, owner, self._stop)
                finally:
                    with self._lock:
                        self.busy -= 1
                if self.on_outcome is not None:
                    self.on_outcome(job, outcome)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                log.exception("worker %s: error while running jobs; retrying", owner)
                self._stop.wait(_POLL_S)


def make_dispatcher(settings: Settings, jobs: JobService, storage: Storage,
                    on_outcome: OutcomeHook | None = None) -> Dispatcher:
    """The dispatcher ``ZOO_DISPATCHER`` names."""
    if settings.dispatcher == "celery":  # zoo worker processes run the jobs (zoo.worker)
        from zoo.service.broker import CeleryDispatcher

        return CeleryDispatcher(settings, jobs)
    return LocalPool(settings, jobs, storage, on_outcome)
