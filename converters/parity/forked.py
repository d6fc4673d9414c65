"""Reference work on the source model in a forked child while the parent converts it.

The generation check's reference (the source's own ``generate()``: tokens and raw logits of every step) needs
only the PyTorch model and the prompts, not the conversion; the TorchScript exporter runs on one core for most of
its time. So the reference is computed in a ``fork()``ed child on the other core while the parent exports, and the
parity stage takes it from there (a 1.1B decoder's ``generate()`` is about 15 s of CPU: bench/bench_llm.py).

The child shares the parent's weights copy-on-write (nothing writes them, so no copy is made), runs PyTorch on one
thread (a child of a process whose OpenMP pool ran hangs in its first parallel region with more: GNU libgomp is
not fork-safe), writes only ``.npz`` arrays into the staging folder (read back without pickle), never prints, and
dies with its parent. Whatever goes wrong (no ``fork``, a crash, a child slower than the deadline), ``get``
answers None and the caller computes the reference in-process as before: the result is the same either way, only
when it is computed differs. Models under ``MIN_WEIGHT_BYTES`` are not forked for; ``ZOO_REFERENCE_FORK=off`` turns
it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

MIN_WAIT_S = 60.0  # the parent waits for a running child at least this long, or as long as it has run so far
# Below this many bytes of weights the reference stays in-process: forking costs about 1 s of CPU (copy-on-write
# faults on both sides of the Python heap), more than a small model's generate() (tiny decoders of the coverage
# bench: 6.0-7.4 s of CPU a pull with the fork against 4.8-6.7 s without)
MIN_WEIGHT_BYTES = 256 * 2**20
_PR_SET_PDEATHSIG = 1


def feeds_key(feeds: dict[str, Any], steps: int) -> str:
    """What a reference is keyed on: the prompts' bytes, shapes and dtypes, and the number of new tokens."""
    import numpy as np

    h = hashlib.sha256(str(steps).encode())
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:32]


class Forked:
    """A child computing arrays (``jobs``: key -> a function returning a list of arrays), one ``.npz`` per key."""

    def __init__(self, pid: int, folder: Path, keys: list[str]) -> None:
        self.pid, self.folder, self.keys = pid, folder, keys
        self.started = time.monotonic()
        self.exit_code: int | None = None
        self.waited_s = 0.0
        self.served: set[str] = set()  # the keys answered from the child's files (what the report says)

    def _wait(self) -> None:
        if self.exit_code is not None:
            return
        start = time.monotonic()
        deadline = start + max(MIN_WAIT_S, start - self.started)
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:  # a hung child: the reference is computed in-process instead
                self.close()
                break
            time.sleep(0.05)
        self.waited_s = round(time.monotonic() - start, 2)

    def get(self, key: str) -> list[Any] | None:
        """The arrays the child computed for ``key``, or None (not one of its jobs, or the child failed)."""
        import numpy as np

        if key not in self.keys:
            return None
        self._wait()
        path = self.folder / f"{key}.npz"
        if self.exit_code != 0 or not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"a{i}"] for i in range(len(data.files))]
        self.served.add(key)
        return arrays

    def close(self) -> None:
        """Stop the child if it still runs (a conversion that failed before parity), and reap it."""
        if self.exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        self.exit_code = -9 if self.exit_code is None else self.exit_code


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get("ZOO_REFERENCE_FORK", "on").strip().lower() not in ("off", "0", "no")


def fork_jobs(jobs: dict[str, Callable[[], list[Any]]], folder: Path, weight_bytes: int) -> Forked | None:
    """Run ``jobs`` in a forked child; None when forking is off or unavailable, or the model (``weight_bytes``) is
    too small for it to pay (the caller computes in-process)."""
    if not jobs or not enabled() or weight_bytes < MIN_WEIGHT_BYTES:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: never returns
        _child(jobs, folder)
    return Forked(pid, folder, list(jobs))


def _child(jobs: dict[str, Callable[[], list[Any]]], folder: Path) -> None:
    code = 1
    try:
        _quiet_child()
        import numpy as np
        import torch

        torch.set_num_threads(1)  # before any parallel region: libgomp's pool did not survive the fork
        for key, job in jobs.items():
            arrays = job()
            tmp = folder / f"{key}.tmp.npz"
            np.savez(tmp, **{f"a{i}": np.asarray(a) for i, a in enumerate(arrays)})
            os.replace(tmp, folder / f"{key}.npz")  # whole or absent: the parent reads only finished files
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers, no exception propagation


def _quiet_child() -> None:
    """Output to /dev/null (the parent's progress owns the terminal), no inherited descriptor kept open (a job
    runner's event pipe must reach end-of-file when the runner exits, a server's socket must close with it), and
    die with the parent."""
    import ctypes
    import resource

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.closerange(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536))
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
