"""``zoo worker``: a Celery worker that runs the jobs ``zoo serve`` queues (``ZOO_DISPATCHER=celery``).

Each message names a job id. The worker claims that job in the job table and
runs it through ``zoo.service.execution.execute``, as the local pool does: the
conversion in a child process of its own (killable; time and memory limits),
the lease beaten while it runs, the outcome written back. A claim that fails
(the job finished, was canceled, or another worker holds a live lease) drops
the message. Celery's ``threads`` pool runs ``ZOO_WORKERS`` jobs at a time: each
slot only supervises its child process, so threads are enough, and a killed
worker takes its children with it (they die with their parent thread).

On a warm shutdown (SIGTERM) the running jobs' processes are stopped and the
jobs go back to the queue without using up an attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
from dataclasses import replace

from zoo import db
from zoo.service.broker import TASK, CeleryDispatcher
from zoo.service.execution import execute
from zoo.service.jobs import JobService
from zoo.service.metrics import Metrics
from zoo.service.ops import Housekeeper
from zoo.settings import Settings
from zoo.storage import make_storage

log = logging.getLogger("zoo.worker")


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = db.get_engine(settings.database_url)
        self.jobs = JobService(self.engine, max_attempts=settings.job_attempts, lease_s=settings.lease_s)
        self.storage = make_storage(settings, self.engine)
        self.dispatcher = CeleryDispatcher(settings, self.jobs)
        self.app = self.dispatcher.app
        self.stopping = threading.Event()
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id = f"{self.instance}:{uuid.uuid4().hex[:8]}"
        self.dispatcher.sweeper.beat = self.beat
        self.housekeeper = Housekeeper(settings, self.jobs)  # retention, and the size of the local copies
        self.metrics = Metrics(self.jobs)  # what this worker ran: attempts, durations, conversions, cache hits
        self.app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(self.run)

    def run(self, job_id: str) -> str:
        """The task: claim ``job_id`` and run it to an outcome; what happened, for Celery's log."""
        owner = f"{self.instance}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
        job = self.jobs.claim(owner, job_id=job_id)
        if job is None:
            return "not claimable (finished, canceled or running elsewhere)"
        try:
            outcome = execute(job, self.jobs, self.storage, self.settings, owner, self.stopping)
        except Exception as exc:  # noqa: BLE001 - the store or the database failed around the job: try again
            log.exception("job %s: the worker failed around the job", job.id)
            try:
                requeued = self.jobs.requeue(job.id, owner, reason=f"the worker failed: {type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the lease lapses, and a sweeper requeues it
                return "failed around the job; left to the sweeper"
            if requeued and self.jobs.get(job.id).state == "queued":
                self.dispatcher.enqueue(job.id)
            return "failed around the job; requeued"
        self.metrics.observe(job, outcome)
        if outcome.state == "requeued":  # its process died, or this worker stops: back in the queue
            self.dispatcher.enqueue(job.id)
        return outcome.state

    def beat(self) -> None:
        """This worker is alive (its row in the workers table, which /readyz counts)."""
        self.jobs.worker_beat(self.worker_id, self.settings.queue)

    def main(self, log_level: str = "info") -> None:
        from celery import signals

        signals.worker_shutting_down.connect(lambda **_: self.stopping.set(), weak=False)
        self.beat()
        if self.settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.settings.worker_metrics_port, addr=self.settings.host, registry=self.metrics.registry)
        self.dispatcher.sweeper.start()
        self.housekeeper.start()
        try:
            self.app.worker_main([
                "worker", "--pool", "threads", "--concurrency", str(self.settings.workers),
                "--queues", self.settings.queue, "--hostname", f"zoo-{os.getpid()}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", log_level.upper(),
            ])
        finally:
            self.housekeeper.stop()
            self.dispatcher.sweeper.stop()
            try:
                self.jobs.worker_gone(self.worker_id)
            except Exception:  # noqa: BLE001 - the row ages out of the alive count by itself
                log.warning("could not remove this worker's row from the workers table")


def run_worker(settings: Settings, concurrency: int | None, log_level: str) -> None:
    """What ``zoo worker`` does: serve the queue until stopped."""
    settings = replace(settings, workers=concurrency or max(settings.workers, 1))
    settings.home.mkdir(parents=True, exist_ok=True)
    worker = Worker(settings)
    metrics = f"; metrics on http://{settings.host}:{settings.worker_metrics_port}/metrics" \
        if settings.worker_metrics_port else ""
    print(f"zoo: worker with {settings.workers} slot(s) on queue {settings.queue}; store {settings.home}; "
          f"artifacts {settings.storage}{metrics}", file=sys.stderr, flush=True)
    worker.main(log_level)
