"""Run every check of a manifest in parallel, each in its own process, within a memory budget.

A check starts only when the memory the running checks are expected to take plus its own estimate
fits the budget (the first always starts, so one model larger than the budget still runs, alone).
Estimates come from what the same check took last time (``ZOO_HOME/check/memory.json``, measured by
``wait4``: the peak resident set of the check's process and of the processes it waited for), else
from its weights' size. While checks run, the resident memory of every check's process tree is
sampled from ``/proc`` and the peak of their sum is reported beside the budget.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from zoo.check.manifest import Check
from zoo.settings import Settings

BASE_MB = {"tf": 2600, "tflite": 2600}  # TensorFlow and onnx2tf on top of torch and onnxruntime
DEFAULT_BASE_MB = 1500  # torch + onnxruntime + a small model
WEIGHTS_FACTOR = 6  # the source, its export, the candidate's session and parity buffers


def default_budget_mb() -> int:
    """Three quarters of the memory available now (Linux), else 4 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) / 1024 * 0.75)
    except OSError:
        pass
    return 4096


def run_checks(checks: list[Check], settings: Settings, *, budget_mb: int, jobs: int,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every check's row (in the manifest's order) and the run's figures: wall time, peak memory."""
    started = time.perf_counter()
    memory = Memory(settings.home / "check" / "memory.json")
    estimates = {c.id: memory.estimate(c, settings) for c in checks}
    pending, running, rows, starts = list(checks), {}, {}, {}
    done: queue.Queue = queue.Queue()
    sampler = Sampler()
    sampler.start()
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(checks))))
    try:
        while pending or running:
            while pending and len(running) < jobs:
                used = sum(estimates[c.id] for c in running.values())
                fits = next((c for c in pending if not running or used + estimates[c.id] <= budget_mb), None)
                if fits is None:
                    break
                pending.remove(fits)
                proc = _start(fits, threads, done)
                running[proc.pid] = fits
                starts[fits.id] = round(time.perf_counter() - started, 3)
                sampler.add(proc.pid)
            pid, row, peak_mb = done.get()
            check = running.pop(pid)
            sampler.remove(pid)
            row.update(peak_rss_mb=peak_mb, estimate_mb=estimates[check.id], started_s=starts[check.id],
                       ended_s=round(time.perf_counter() - started, 3))
            rows[check.id] = row
            if peak_mb:
                memory.record(check, peak_mb)
            if log:
                log(f"{check.id}: {'passed' if row['passed'] else 'FAILED'} in {row.get('seconds', 0):.1f} s, "
                    f"peak {peak_mb or 0:.0f} MB ({len(rows)}/{len(checks)})")
    finally:
        sampler.stop()
        memory.save()
    return {"rows": [rows[c.id] for c in checks], "wall_s": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(sampler.peak_mb), "budget_mb": budget_mb, "jobs": jobs}


def _start(check: Check, threads: int, done: queue.Queue) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))  # N checks on C cores: C/N threads each, not C each
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "zoo.check.job"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=err, env=env)
    threading.Thread(target=_wait, args=(proc, check, err, done), daemon=True).start()
    return proc


def _wait(proc: subprocess.Popen, check: Check, err: Any, done: queue.Queue) -> None:
    """Feed the check, read its row, reap it with wait4 for its peak memory (the thread's only exit)."""
    peak_mb = None
    out = b""
    try:
        proc.stdin.write(json.dumps(check.to_job()).encode())
        proc.stdin.close()
        out = proc.stdout.read()
    except OSError:
        pass
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    else:  # pragma: no cover - Windows
        proc.wait()
    row = _row(out)
    if row is None:
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        reason = f"the check's process exited with {proc.returncode}: " + (" | ".join(tail) or "no output")
        row = {"model": check.model, "target": check.target, "kind": "file" if check.file else "format", "passed": False,
               "failures": [f"error: {reason}"], "error": reason}
    err.close()
    done.put((proc.pid, row, peak_mb))


def _row(out: bytes) -> dict[str, Any] | None:
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        row = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


class Memory:
    """Each check's measured peak, kept for the next run's estimates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.known: dict[str, dict[str, float]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def estimate(self, check: Check, settings: Settings) -> int:
        mine = self.known.get(check.model, {})
        if check.target in mine:
            return int(mine[check.target] * 1.1)
        weights = weights_mb(check.model, settings)
        base = BASE_MB.get(check.target, DEFAULT_BASE_MB)
        return int(max([base + WEIGHTS_FACTOR * (weights or 0), *(v * 1.1 for v in mine.values())]))

    def record(self, check: Check, peak_mb: float) -> None:
        self.known.setdefault(check.model, {})[check.target] = round(peak_mb)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.known, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:
            pass  # an estimate is a nicety


def weights_mb(name: str, settings: Settings) -> float | None:
    """The size of a model's weights when a revision of it is already known here (no network), else None."""
    try:
        from dataclasses import replace

        from zoo.registry.index import Registry
        from zoo.registry.names import parse_name

        registry = Registry(replace(settings, index_catalogs=False))  # never index timm (and import torch) here
        record = registry.resolve(parse_name(name))
        revisions = registry.revisions(record.id)
        if not revisions:
            return None
        _rev, files = revisions[-1]
        return sum(f.size for f in files if f.path.endswith((".safetensors", ".bin", ".h5", ".keras", ".pth"))) / 2**20
    except Exception:  # noqa: BLE001 - any doubt: the default estimate
        return None


class Sampler(threading.Thread):
    """The resident memory of the running checks' process trees, summed, sampled every 0.2 s (Linux)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.pids: set[int] = set()
        self.peak_mb = 0.0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def add(self, pid: int) -> None:
        with self._lock:
            self.pids.add(pid)

    def remove(self, pid: int) -> None:
        with self._lock:
            self.pids.discard(pid)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        while not self._stop_event.wait(0.2):
            with self._lock:
                roots = set(self.pids)
            if roots:
                self.peak_mb = max(self.peak_mb, tree_rss(roots, page) / 2**20)


def tree_rss(roots: set[int], page: int) -> int:
    """Bytes resident in ``roots`` and all their descendants, from /proc (0 where there is none)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, stack, seen = 0, list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
        try:
            total += int((proc / str(pid) / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total
