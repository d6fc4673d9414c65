"""Run model-defined code in a forked child that cannot write outside one directory or reach the network.

A TensorFlow SavedModel is a program: its initialisers run when TensorFlow loads it and its signature
runs when parity calls it. ``zoo.converters.loaders.saved_model_check`` reads the graph as data first
(an allow-list of compute ops); this module is the second wall, for what that check cannot foresee.

``run_confined(fn, scratch)`` forks; the child

- takes Linux Landlock (ABI 1+): every file-system write right (create, write, truncate, remove, rename,
  link, make device/socket/fifo) is allowed beneath ``scratch`` only, plus writes to ``/dev/null``;
  with ABI 4+ every TCP bind and connect is denied; with ABI 6+ abstract Unix sockets and signals to
  processes outside the sandbox are denied;
- leaves the network namespace where it may (``unshare(CLONE_NEWNET)``: root, or an unprivileged user
  namespace): no interface but a down loopback, so UDP and every other socket family are cut too;
- drops credentials from its environment (``HF_TOKEN``, ``ZOO_TOKEN``, ``AWS_*``...), points ``TMPDIR``
  into ``scratch``, sets ``no_new_privs``;

then runs ``fn()`` and sends its JSON-able result (or its ``ZooError``) back through a pipe: nothing is
unpickled from the child. Reads are not confined (TensorFlow reads its own libraries); that is why
secrets leave the environment. Where Landlock is missing the run fails closed
(``SandboxUnavailableError``), unless ``ZOO_SANDBOX=off`` says to trust the model (docs/security.md).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo import errors

# syscall numbers (the same on x86_64 and aarch64) and the uapi constants of <linux/landlock.h>
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000

_WRITE_FILE, _TRUNCATE, _IOCTL_DEV = 1 << 1, 1 << 14, 1 << 15
_WRITE_RIGHTS_V1 = (_WRITE_FILE | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11
                    | 1 << 12)  # write, remove dir/file, make char/dir/reg/sock/fifo/block/sym
_REFER = 1 << 13  # ABI 2: rename and link across directories
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

# what leaves the child's environment: tokens and keys the model's code could read and hide in its output
_SECRET_PREFIXES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ZOO_TOKEN", "AWS_", "ZOO_S3_", "ZOO_DATABASE_URL",
                    "ZOO_BROKER_URL", "GOOGLE_", "AZURE_")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (not Linux, too old, or disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def mode() -> str:
    """``ZOO_SANDBOX``: ``landlock`` (the default: confine, or refuse where the kernel cannot) or ``off``."""
    value = os.environ.get("ZOO_SANDBOX", "landlock").strip().lower()
    if value not in ("landlock", "off"):
        raise errors.ConfigError(f"ZOO_SANDBOX={value!r} is not a sandbox mode", hint="use ZOO_SANDBOX=landlock or off")
    return value


def confine(scratch: Path) -> list[str]:
    """Confine this (single-threaded, freshly forked) process; the names of the walls that took."""
    libc = _libc()
    abi = landlock_abi()
    if abi < 1:
        raise errors.SandboxUnavailableError("this kernel has no Landlock")
    fs = _WRITE_RIGHTS_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise errors.SandboxUnavailableError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        file_rights = fs & (_WRITE_FILE | _TRUNCATE | _IOCTL_DEV)
        for path, rights in ((scratch, fs), (Path("/dev/null"), file_rights)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(rights, fd)
                if libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise errors.SandboxUnavailableError(f"landlock_add_rule({path}) failed: "
                                                         f"{os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise errors.SandboxUnavailableError(f"prctl(no_new_privs) failed: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise errors.SandboxUnavailableError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    walls = [f"landlock-abi{abi}:writes-only-in-scratch"]
    if net:
        walls.append("landlock:no-tcp")
    if scoped:
        walls.append("landlock:scoped-signals-and-abstract-sockets")
    if libc.unshare(_CLONE_NEWNET) == 0 or libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        walls.append("netns:no-network")
    return walls


def _scrub_environment(scratch: Path) -> None:
    for name in list(os.environ):
        if name.startswith(_SECRET_PREFIXES):
            del os.environ[name]
    tmp = scratch / ".tmp"
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    import tempfile

    tempfile.tempdir = str(tmp)


def run_confined(fn: Callable[[list[str]], Any], scratch: Path, *, what: str) -> Any:
    """``fn(walls)`` in a confined child; its JSON-able return value, or its ZooError raised here.
    ``what`` names the model in messages."""
    if mode() == "off":
        return fn(["none: ZOO_SANDBOX=off"])
    if landlock_abi() < 1:
        raise errors.SandboxUnavailableError(
            f"zoo runs {what} only in a confined process, and this kernel has no Landlock to confine it",
            hint="run zoo on Linux 5.13 or later with Landlock enabled (lsm=landlock), or set ZOO_SANDBOX=off "
                 "to run it unconfined: only for a model you trust (docs/security.md)")
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: confine, run, answer, and leave without running the parent's exit handlers
        os.close(read_fd)
        code = 0
        try:
            _scrub_environment(scratch)
            walls = confine(scratch)
            answer = {"ok": fn(walls)}
        except errors.ZooError as exc:
            answer = {"error": type(exc).__name__, "payload": exc.to_dict()}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as data
            answer = {"crash": f"{type(exc).__name__}: {exc}"[:4000], "trace": traceback.format_exc()[-4000:]}
        try:
            with os.fdopen(write_fd, "w") as out:
                json.dump(answer, out, default=str)
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(text)
    except ValueError:
        signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        raise errors.ConversionError(
            f"the confined process running {what} died without an answer"
            + (f" (signal {signal})" if signal else f" (exit {os.waitstatus_to_exitcode(status)})"),
            hint="the model may need more memory (ZOO_JOB_MEMORY_MB) or do something the sandbox forbids") from None
    if "ok" in answer:
        return answer["ok"]
    if "error" in answer:
        raise _rebuild(answer["error"], answer["payload"])
    raise errors.ConversionError(f"{what} failed in its confined process: {answer['crash']}",
                                 hint="see the trace with ZOO_DEBUG=1", trace=answer.get("trace"))


def _rebuild(name: str, payload: dict[str, Any]) -> errors.ZooError:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ZooError)):
        cls = errors.ZooError
    details = {k: v for k, v in payload.items() if k not in ("error", "message", "hint")}
    return cls(payload.get("message", ""), hint=payload.get("hint"), **details)
