"""Jobs through a Celery broker (``ZOO_DISPATCHER=celery``): the app's configuration,
the dispatcher ``zoo serve`` uses, and the sweeper that finds jobs whose worker died.

The job table stays the source of truth. A message only says "job X may need
running"; the worker that receives it claims X in the table (lease, heartbeat,
attempts cap, as the local pool does) and drops the message when the claim
fails, so a message delivered twice, or sent again by the sweeper while the
broker also redelivers it, runs the job once.

Messages are acknowledged after the job ran (``acks_late``), one at a time per
worker slot (prefetch 1), and rejected back to the queue when a prefork child
dies (``task_reject_on_worker_lost``); the broker's visibility timeout is above
the job time limit, so it never hands a job out again while a live worker still
runs it. A worker killed outright (SIGKILL, a lost machine) stops beating its
lease: the sweeper, in ``zoo serve`` and in every ``zoo worker``, puts the job
back in the queue and sends it again within about one lease. A broker that lost its
messages (a Redis restart without persistence) strands queued jobs: each sweep also
sends again the queued jobs the broker holds no message for (``Sweeper.stranded``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any, Callable

from zoo import errors
from zoo.service.jobs import Job, JobService
from zoo.settings import Settings

log = logging.getLogger("zoo.service.broker")
TASK = "zoo.run_job"
_JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


def visibility_timeout(settings: Settings) -> int:
    """Seconds before the broker hands an unacknowledged job out again: above the job time limit."""
    return int(settings.job_timeout_s + 4 * settings.lease_s + 300)


def sweep_interval(settings: Settings) -> float:
    """Seconds between two passes of a sweeper: half a lease, between 0.5 and 15."""
    return min(max(settings.lease_s / 2, 0.5), 15.0)


def worker_stale_s(settings: Settings) -> float:
    """A worker not seen for this long is not counted alive: three sweeps."""
    return 3 * sweep_interval(settings) + 2


def make_celery(settings: Settings) -> Any:
    """The Celery app of this deployment (broker, queue and key prefix from the settings)."""
    try:
        from celery import Celery
    except ImportError as exc:
        raise errors.MissingDependencyError("ZOO_DISPATCHER=celery needs Celery and redis",
                                            hint="pip install 'zoo-hub[distributed]'") from exc
    app = Celery("zoo", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # every key in its own namespace, so deployments (and test runs) can share one Redis
        broker_transport_options={"visibility_timeout": visibility_timeout(settings),
                                  "global_keyprefix": f"{settings.queue}:"},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
    )
    return app


class Sweeper:
    """A thread that, every half lease, requeues jobs whose lease lapsed, sends again the queued jobs
    whose broker message is gone, and (in a worker) beats the worker's row and prunes old records."""

    def __init__(self, jobs: JobService, enqueue: Callable[[str], bool], interval_s: float, *,
                 resend_after_s: float = 0.0, messages: Callable[[], set[str] | None] | None = None,
                 beat: Callable[[], None] | None = None, housekeeping: Callable[[], Any] | None = None) -> None:
        self.jobs = jobs
        self.enqueue = enqueue
        self.interval_s = interval_s
        self.resend_after_s = resend_after_s or interval_s
        self.messages = messages  # the job ids the broker holds a message for; None when it cannot tell
        self.beat = beat
        self.housekeeping = housekeeping
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.unsent: set[str] = set()  # ids whose message the broker refused: tried again each sweep
        self.resent_total = 0  # stranded jobs sent again by this sweeper
        self.last_stranded = 0  # stranded jobs found by the last pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="zoo-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def sweep(self) -> list[str]:
        """One pass; the ids sent."""
        if self.beat is not None:
            self.beat()
        with self._lock:
            ids = sorted(self.unsent)
        ids += self.jobs.requeue_lapsed()
        ids += self.stranded()
        sent = [job_id for job_id in ids if self.enqueue(job_id)]
        for job_id in sent:
            log.info("job %s: sent to the queue again", job_id)
        if self.housekeeping is not None:
            self.housekeeping()
        return sent

    def stranded(self) -> list[str]:
        """Queued jobs untouched for ``resend_after_s`` whose message the broker no longer holds (a
        restarted Redis, a flushed queue): the job table is the source of truth, so they are sent again.
        A job whose message is still waiting in the queue is left alone (no duplicates behind a long queue)."""
        if self.messages is None:
            return []
        candidates = [c for c in self.jobs.stranded(self.resend_after_s) if c[0] not in self.unsent]
        if not candidates:
            self.last_stranded = 0
            return []
        present = self.messages()
        if present is None:  # the broker cannot be read now: the next pass tries again
            return []
        lost = [(job_id, at) for job_id, at in candidates if job_id not in present]
        self.last_stranded = len(lost)
        reason = "its message was no longer in the broker (lost by a broker restart?): sent again"
        resent = [job_id for job_id, at in lost if self.jobs.mark_resent(job_id, at, reason)]
        self.resent_total += len(resent)
        if resent:
            log.warning("%d queued job(s) had no message in the broker; sent again", len(resent))
        return resent

    def mark(self, job_id: str, sent: bool) -> None:
        with self._lock:
            (self.unsent.discard if sent else self.unsent.add)(job_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the sweeper
                log.exception("sweeper: error while looking for lapsed jobs; retrying")


class CeleryDispatcher:
    """Queue jobs for ``zoo worker`` processes through the broker (``zoo serve`` runs none itself)."""

    def __init__(self, settings: Settings, jobs: JobService) -> None:
        self.settings = settings
        self.jobs = jobs
        self.app = make_celery(settings)
        self.sweeper = Sweeper(jobs, self.enqueue, sweep_interval(settings), resend_after_s=settings.resend_after_s,
                               messages=self.messages)

    def start(self) -> None:
        # Queued jobs get a message again: one may have been inserted just before a crash and never
        # sent, or the broker lost its queue. A duplicate is harmless: the claim decides.
        queued, _ = self.jobs.list(state="queued", limit=100_000)
        for job in reversed(queued):
            self.enqueue(job.id)
        self.sweeper.start()

    def submitted(self, job: Job) -> None:
        if job.state == "queued":
            self.enqueue(job.id)

    def stop(self) -> None:
        self.sweeper.stop()

    def enqueue(self, job_id: str) -> bool:
        """Send the job's message; False (and kept for the sweeper to retry) when the broker is down."""
        try:
            self.app.send_task(TASK, args=[job_id], queue=self.settings.queue, retry=True,
                               retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5})
        except Exception as exc:  # noqa: BLE001 - kombu raises several kinds; the job stays queued in the table
            log.warning("job %s: could not reach the broker (%s); will retry", job_id, exc)
            self.sweeper.mark(job_id, sent=False)
            return False
        self.sweeper.mark(job_id, sent=True)
        return True

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dispatcher": "celery", "queue": self.settings.queue,
                               "unsent": len(self.sweeper.unsent), "stranded": self.sweeper.last_stranded,
                               "resent": self.sweeper.resent_total}
        try:
            out["workers_alive"] = self.jobs.workers_alive(self.settings.queue, worker_stale_s(self.settings))
        except Exception as exc:  # noqa: BLE001 - the database check reports the database
            out["workers_alive"] = None
            log.debug("could not count workers: %s", exc)
        if out["workers_alive"] == 0:
            out["workers"] = "no live worker: queued jobs wait until a `zoo worker` starts"
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                out["messages"] = _queue_length(conn, self.settings.queue)
            out["ready"] = True
        except Exception as exc:  # noqa: BLE001
            out.update(ready=False, broker=f"unreachable: {type(exc).__name__}: {exc}"[:300])
        return out

    def messages(self) -> set[str] | None:
        """The ids of the jobs the broker holds a message for (waiting, or delivered and not yet
        acknowledged); None when it cannot tell (unreachable, or not Redis)."""
        if not self.settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return None
        try:
            return broker_job_ids(self.settings.broker_url, self.settings.queue)
        except Exception as exc:  # noqa: BLE001 - redis raises several kinds; the next sweep tries again
            log.warning("could not read the broker's queue (%s); will retry", exc)
            return None


def broker_job_ids(url: str, queue: str) -> set[str]:
    """Job ids in the Redis lists of ``queue`` (every priority) and its unacknowledged hash, as kombu's
    Redis transport keeps them under the key prefix ``make_celery`` sets."""
    import redis

    prefix = f"{queue}:"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        raw: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}{queue}*", count=1000):
            if client.type(key) == b"list":
                raw += client.lrange(key, 0, -1)
        raw += client.hvals(f"{prefix}unacked")
    finally:
        client.close()
    return {job_id for message in raw for job_id in _job_ids(message)}


def _job_ids(raw: bytes) -> list[str]:
    """The job id a kombu message carries (its ``argsrepr`` header; the body when absent)."""
    try:
        data = json.loads(raw)
        if isinstance(data, list):  # the unacked hash: [message, exchange, routing key]
            data = data[0]
        headers = data.get("headers") or {}
        if headers.get("argsrepr"):
            return _JOB_ID.findall(str(headers["argsrepr"]))
        body = data.get("body", "")
        if (data.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode(errors="replace")
        return _JOB_ID.findall(str(body))
    except (ValueError, TypeError, AttributeError, IndexError):
        return _JOB_ID.findall(raw.decode(errors="replace"))


def _queue_length(conn: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (0 when the broker has not created it yet)."""
    from kombu.exceptions import ChannelError

    try:
        return conn.default_channel.queue_declare(queue, passive=True).message_count
    except ChannelError:
        return 0
