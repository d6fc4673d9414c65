"""Run one claimed job in its own killable process and bring the job table up to date.

The same function serves the local worker pool inside ``zoo serve`` and any
other worker that claims jobs from the table (a Celery task, in part 2). The
child (``zoo.runner``) runs in a new session; the supervisor reads its events
from a pipe, beats the job's lease, and kills the whole process group when a
client cancels, the time limit passes, the lease is lost or the worker stops.
A kill never publishes anything: the store only shows artifacts that were
renamed into place complete, and the child's staging directory is removed.

Outcomes: the child's result (succeeded) or error (failed); canceled; a time
limit (failed, ``job_limit``); a child that crashed (exited non-zero, or died of
a crash signal, without answering: failed, with the last lines of its log); a
child killed by someone else (SIGKILL from the OOM killer, an operator's
SIGTERM: back to the queue, counted against the attempts cap); a worker stop
(back to the queue, not counted).

The child runs the *installed* zoo whatever the working directory: ``python -m``
would put the working directory first on ``sys.path``, where a folder named
``zoo`` (a clone, say) would shadow the package (``runner_command``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.service.jobs import Job, JobService, error_dict
from zoo.service.ops import note_use
from zoo.settings import Settings
from zoo.storage.artifacts import ArtifactStore
from zoo.storage.blobs import Storage

log = logging.getLogger("zoo.service.execution")


@dataclass
class Outcome:
    state: str  # succeeded | failed | canceled | requeued | lost
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    reason: str = ""  # why a job went back to the queue
    counted: bool = True  # whether that attempt counts against the cap
    duration_s: float = 0.0

    @property
    def converted(self) -> bool:
        """A conversion really ran (not answered from the cache)."""
        return self.state == "succeeded" and not (self.result or {}).get("cached", True)


def child_env(settings: Settings) -> dict[str, str]:
    """The server's environment plus the settings it runs with, spelt as variables."""
    env = dict(os.environ)
    env.update({"ZOO_HOME": str(settings.home), "ZOO_DATABASE_URL": settings.database_url,
                "HF_HUB_CACHE": str(settings.hf_hub_cache), "HF_ENDPOINT": settings.hf_endpoint,
                "HF_HUB_OFFLINE": "1" if settings.hf_offline else "0",
                "ZOO_JOB_MEMORY_MB": str(settings.job_memory_mb)})
    if settings.hf_token:
        env["HF_TOKEN"] = settings.hf_token
    return env


# ``python -c`` puts the working directory ('') first on sys.path, as ``-m`` does; dropping it makes the child
# import the zoo this interpreter has installed, not a ``zoo/`` folder that happens to be where the server runs.
# The module's name stays a word of its own on the command line, where ps, pgrep and the tests look for it.
_BOOTSTRAP = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
              "from zoo.runner import main; sys.exit(main(sys.argv[2:]))")
EXIT_GRACE_S = 10.0  # how long a child that closed its event pipe may take to exit before it is killed
_ERROR_LINE = re.compile(r"^(zoo: error|[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b)")
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


def runner_command(*args: str) -> list[str]:
    """The command line of a ``zoo.runner`` child process, immune to the working directory."""
    return [sys.executable, "-c", _BOOTSTRAP, "zoo.runner", *args]


def job_log_path(settings: Settings, job_id: str) -> Path:
    return settings.home / "logs" / "jobs" / f"{job_id}.log"


def execute(job: Job, jobs: JobService, storage: Storage, settings: Settings, owner: str,
            stop: threading.Event | None = None) -> Outcome:
    """Run the claimed ``job`` (leased to ``owner``) to an outcome recorded in the table."""
    started = time.monotonic()
    try:
        proc, events_fd = _spawn(job, settings)
    except OSError as exc:  # no process could be started (out of memory, too many processes)
        outcome = Outcome("requeued", reason=f"the job's process could not start: {exc}")
        record_outcome(job, jobs, storage, owner, outcome)
        return outcome
    killed = False
    try:
        final, ended = _supervise(job, jobs, settings, owner, proc, events_fd, stop or threading.Event())
        if ended == "exited":  # its pipe closed: let it finish exiting, so its own exit status tells what happened
            _wait_exit(proc, EXIT_GRACE_S)
    finally:
        os.close(events_fd)
        killed = _kill(proc)
        ArtifactStore(settings.home).clean_stale()  # the child's staging directory, if it was killed
    outcome = _decide(job, final, ended, proc, settings, killed=killed)
    record_outcome(job, jobs, storage, owner, outcome, beat_every=beat_interval(settings))
    outcome.duration_s = time.monotonic() - started
    if outcome.state == "succeeded" and (outcome.result or {}).get("digest"):
        note_use(settings, outcome.result["digest"])  # its place in the LRU order of the local copies
    return outcome


def _spawn(job: Job, settings: Settings) -> tuple[subprocess.Popen, int]:
    read_fd, write_fd = os.pipe()
    spec = {"model": job.model, "format": job.format, "options": job.options}
    path = job_log_path(settings, job.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = runner_command("--job", job.id, "--events-fd", str(write_fd), "--parent", str(os.getpid()),
                         "--spec", json.dumps(spec))
    with open(path, "ab") as out:
        out.write(f"--- attempt {job.attempts} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(write_fd,),
                                    start_new_session=True, env=child_env(settings))
        finally:
            os.close(write_fd)
    return proc, read_fd


def _supervise(job: Job, jobs: JobService, settings: Settings, owner: str, proc: subprocess.Popen,
               events_fd: int, stop: threading.Event) -> tuple[dict[str, Any] | None, str]:
    """Relay the child's events until it ends; (its final event, why it ended)."""
    beat_every = beat_interval(settings)
    deadline = time.monotonic() + settings.job_timeout_s
    next_beat = time.monotonic() + beat_every
    buffer, final = b"", None
    os.set_blocking(events_fd, False)
    while True:
        ready, _, _ = select.select([events_fd], [], [], min(beat_every, 0.25))
        exited = not ready and proc.poll() is not None  # a grandchild may hold the pipe open: do not wait for EOF
        chunk = _read_available(events_fd) if ready or exited else b""
        buffer += chunk or b""
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            final = _relay(job, jobs, owner, line) or final
        if chunk is None or exited:
            return final, "exited"
        now = time.monotonic()
        if stop.is_set():
            return final, "stopped"
        if now > deadline:
            return final, "timeout"
        if now >= next_beat:
            next_beat = now + beat_every
            status = jobs.heartbeat(job.id, owner)
            if status != "ok":
                return final, status  # "cancel" or "lost"


def beat_interval(settings: Settings) -> float:
    """Seconds between two heartbeats of a job's lease: a third of the lease, between 0.2 and 5."""
    return max(min(settings.lease_s / 3, 5.0), 0.2)


class LeaseKeeper:
    """Beats a job's lease from a thread while the worker does something slow after the job's process
    ended (the S3 upload of its artifact): ``lost`` turns true when the lease is no longer this worker's."""

    def __init__(self, jobs: JobService, job_id: str, owner: str, every_s: float) -> None:
        self.jobs, self.job_id, self.owner, self.every_s = jobs, job_id, owner, every_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"zoo-lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                status = self.jobs.heartbeat(self.job_id, self.owner)
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("job %s: could not beat its lease; retrying", self.job_id)
                continue
            if status == "lost":  # "cancel" is ignored here: the result is nearly recorded
                self.lost = True
                return


def _read_available(fd: int) -> bytes | None:
    """What the pipe holds now; None at end of file."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data or None
        data += chunk


def _relay(job: Job, jobs: JobService, owner: str, line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    kind = event.get("kind")
    if kind == "stage":
        jobs.report_stage(job.id, owner, str(event.get("stage")), float(event.get("progress") or 0.0))
    elif kind == "note":
        jobs.note(job.id, str(event.get("message")))
    elif kind in ("result", "error"):
        return event
    return None


def _wait_exit(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the child's whole process group (native code cannot ignore it), then reap it.
    True when the child itself was still running and this kill ended it."""
    killed = False
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left in its group
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return killed


def _decide(job: Job, final: dict[str, Any] | None, ended: str, proc: subprocess.Popen,
            settings: Settings, *, killed: bool = False) -> Outcome:
    log_path = job_log_path(settings, job.id)
    if ended == "lost":
        return Outcome("lost")
    if final is not None and final["kind"] == "result":  # it finished first: the artifact is published
        return Outcome("succeeded", result=final["result"])
    if final is not None:
        error = dict(final["error"])
        if error.get("error") == "internal":  # an unexpected exception: where it came from is in the log
            error["log_tail"] = log_tail(log_path)
        return Outcome("failed", error=error)
    if ended == "cancel":
        return Outcome("canceled")
    if ended == "stopped":
        return Outcome("requeued", reason="the worker stopped", counted=False)
    if ended == "timeout":
        exc = errors.JobLimitError(f"the job ran past its time limit of {settings.job_timeout_s:g} s and was stopped",
                                   hint="raise ZOO_JOB_TIMEOUT if the conversion needs longer")
        return Outcome("failed", error=error_dict(exc))
    code = proc.returncode
    if killed:  # it closed its pipe without answering, then did not exit: it hung on the way out
        return _crashed(f"the job's process stopped answering and did not exit within {EXIT_GRACE_S:g} s", log_path)
    if code < 0 and signal.Signals(-code) not in _CRASH_SIGNALS:  # the OOM killer, an operator: try again
        return Outcome("requeued", reason=f"the job's process was killed by {signal.Signals(-code).name}")
    how = f"crashed with {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    return _crashed(f"the job's process {how} without an answer", log_path)


def _crashed(what: str, log_path: Path) -> Outcome:
    """A failed outcome for a child that crashed: the last error line of its log leads the message."""
    tail = log_tail(log_path)
    last_error = next((line for line in reversed(tail) if _looks_like_error(line)), None)
    exc = errors.ZooError(f"{what}: {last_error}" if last_error else what,
                          hint="the job's log is logs/jobs/<job id>.log under the server's ZOO_HOME; "
                               "rerun with ZOO_DEBUG=1 for more")
    return Outcome("failed", error={**error_dict(exc), "error": "job_crashed", "log_tail": tail})


def _looks_like_error(line: str) -> bool:
    """A traceback's last line (``ImportError: ...``) or zoo's own ``zoo: error: ...``."""
    return _ERROR_LINE.match(line) is not None


def record_outcome(job: Job, jobs: JobService, storage: Storage, owner: str, outcome: Outcome,
                   beat_every: float | None = None) -> None:
    """Write ``outcome`` to the job table. A success first makes the artifact public (in S3 mode: the
    upload), beating the lease meanwhile; when the lease is lost anyway (another worker took the job),
    the outcome becomes "lost": the result is thrown away and nothing claims it succeeded."""
    if outcome.state == "succeeded":
        with LeaseKeeper(jobs, job.id, owner, beat_every or max(jobs.lease_s / 3, 0.2)) as keeper:
            try:
                outcome.result = public_result(outcome.result or {}, storage)
            except errors.ZooError as exc:  # the artifact vanished, or cannot be read, right after publishing
                outcome.state, outcome.error = "failed", error_dict(exc)
        if keeper.lost:
            outcome.state = "lost"
    recorded = True
    if outcome.state == "succeeded":
        recorded = jobs.finish(job.id, owner, "succeeded", result=outcome.result)
    elif outcome.state in ("failed", "canceled"):
        recorded = jobs.finish(job.id, owner, outcome.state, error=public_error(outcome.error))
    elif outcome.state == "requeued":
        recorded = jobs.requeue(job.id, owner, reason=outcome.reason, count_attempt=outcome.counted)
    if outcome.state != "lost" and not recorded:
        outcome.state = "lost"
    if outcome.state == "lost":
        log.warning("job %s attempt %d: its lease was lost (another worker holds the job); this attempt's "
                    "result is thrown away", job.id, job.attempts)
    else:
        log.info("job %s attempt %d: %s", job.id, job.attempts, outcome.state)


# An absolute path: a "/" that starts a token (not the "/" inside "org/name" or "https://host/x").
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"(),;:]+/)+[^\s/'\"(),;:]*")
_PATH_FIELDS = ("quarantined", "artifact_dir", "log_path")


def public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job's error as clients see it: no server paths (the job log, the quarantine, staging, the
    Hugging Face cache, source files in a traceback) in any text, and no path-valued fields."""
    if error is None:
        return None

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return _SERVER_PATH.sub("<server path>", value)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if k not in _PATH_FIELDS}
        return value

    return scrub(error)


def public_result(result: dict[str, Any], storage: Storage) -> dict[str, Any]:
    """The pull result as a client sees it: no server paths; the archive of a directory artifact."""
    out = {k: v for k, v in result.items() if k not in ("path", "artifact_dir")}
    archive = storage.index_archive(result["digest"])
    if archive is not None:
        out["archive"] = {"sha256": archive[0], "size": archive[1]}
    return out


def log_tail(path: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` lines of a job's log (the attempt's header included), each cut to 300 characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line[:300] for line in text.strip().splitlines()[-lines:]]
