"""Every error zoo raises on purpose, and the tables that map them to exit codes and HTTP statuses.

Each class also inherits the closest built-in exception so callers that do not
know zoo can still catch it sensibly. Every message says what happened and what
to do next; ``hint`` carries the second half when it is worth a separate line.
"""

from __future__ import annotations

import errno
import re
from typing import Any


class ZooError(Exception):
    """Root of every error zoo raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: v for k, v in self.details.items() if v is not None})
        return out


# --- usage -----------------------------------------------------------------
class UsageError(ZooError, ValueError):
    code = "usage"


class InvalidNameError(UsageError):
    code = "invalid_name"


class AmbiguousNameError(UsageError):
    code = "ambiguous_name"


class IdempotencyKeyReuseError(UsageError):
    code = "idempotency_key_reused"


# --- not found -------------------------------------------------------------
class NotFoundError(ZooError, LookupError):
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RevisionNotFoundError(NotFoundError):
    code = "revision_not_found"


class ArtifactNotFoundError(NotFoundError):
    code = "artifact_not_found"


class JobNotFoundError(NotFoundError):
    code = "job_not_found"


# --- offline / network -----------------------------------------------------
class NetworkError(ZooError, ConnectionError):
    code = "network"


class OfflineError(NetworkError):
    code = "offline_not_cached"


class AuthError(NetworkError):
    code = "auth"


# --- the service: who asks, in what state, with what body --------------------
class UnauthorizedError(AuthError):
    """No token, or one zoo does not know (or revoked)."""

    code = "unauthorized"


class ForbiddenError(AuthError):
    """A valid token without the scope the operation needs."""

    code = "forbidden"


class JobStateError(UsageError):
    """The job is not in a state that allows the operation (cancel a finished job)."""

    code = "job_state"


class PayloadTooLargeError(UsageError):
    code = "payload_too_large"


class DownloadIntegrityError(NetworkError):
    """The hub (or a proxy) served bytes that do not match the digest it announced."""

    code = "download_integrity"


# --- unsupported -----------------------------------------------------------
class UnsupportedError(ZooError, NotImplementedError):
    code = "unsupported"


class UnsupportedFormatError(UnsupportedError):
    code = "unsupported_format"


class MissingDependencyError(UnsupportedError, ImportError):
    code = "missing_dependency"


class SandboxUnavailableError(UnsupportedError):
    """A model that runs its own code (a SavedModel) needs a confined process this machine cannot make."""

    code = "sandbox_unavailable"


# --- bad model files -------------------------------------------------------
class InvalidModelError(ZooError, ValueError):
    """The model's own files are missing, corrupt or unsafe."""

    code = "invalid_model"


class IntegrityError(InvalidModelError):
    code = "integrity"


class UnsafeModelError(InvalidModelError):
    code = "unsafe_model"


# --- local storage ---------------------------------------------------------
class StorageError(ZooError, OSError):
    """A write failed for want of space: disk full, quota, or a file-size limit."""

    code = "storage_full"


# --- conversion and parity -------------------------------------------------
class ConversionError(ZooError, RuntimeError):
    code = "conversion_failed"


class ParityError(ZooError, ArithmeticError):
    code = "parity_failed"


class ReferenceMismatchError(ParityError):
    """``zoo import``: the rebuilt model does not reproduce the outputs recorded at training time beside the
    checkpoint (``reference.npz``); nothing was imported. Its details carry the figures."""

    code = "reference_mismatch"


class SourceModelError(ZooError, RuntimeError):
    """The source model itself raised on the inputs parity would feed it: the inputs do not fit the
    model (a shape, a range, a sample rate), so nothing was converted. Its details name the input set
    and the inputs that reach the failing node."""

    code = "source_model_failed"


# --- a job's process ---------------------------------------------------------
class JobLimitError(ConversionError):
    """A job's process went past its time or memory limit and was stopped."""

    code = "job_limit"


class JobCrashedError(ZooError, RuntimeError):
    """A job's process died without an answer on every attempt."""

    code = "job_crashed"


# --- the deployment's configuration -----------------------------------------
class ConfigError(ZooError, RuntimeError):
    """A setting names something that cannot be used: a database URL that does not parse, names no
    installed driver, or leads to no database."""

    code = "config"


# --- the one table ---------------------------------------------------------
# Most specific class first; the first isinstance match wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (UsageError, 2),
    (NotFoundError, 3),
    (NetworkError, 4),
    (UnsupportedError, 5),
    (ParityError, 6),
    (InvalidModelError, 7),
    (ConversionError, 8),
    (StorageError, 9),
    (SourceModelError, 10),
    (ConfigError, 11),
    (ZooError, 1),
]
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


# The same errors over HTTP. Upstream (hub) failures are 502: the client did
# nothing wrong, and retrying later may help.
HTTP_STATUSES: list[tuple[type[BaseException], int]] = [
    (PayloadTooLargeError, 413),
    (StorageError, 507),
    (JobStateError, 409),
    (UsageError, 422),
    (NotFoundError, 404),
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (NetworkError, 502),
    (UnsupportedError, 422),
    (ParityError, 422),
    (SourceModelError, 424),  # Failed Dependency: the source model failed on the inputs, before any conversion
    (InvalidModelError, 422),
    (ConversionError, 422),
    (JobCrashedError, 500),
    (ZooError, 500),
]


def first_line(exc: BaseException, limit: int = 300, *, skip: str | None = None, typed: bool = False) -> str:
    """The first non-empty line of ``exc``'s message, stripped and cut at ``limit`` characters ("" if none): what
    an error message quotes of a third-party tool's failure (their messages run to pages of traceback or IR).
    ``skip``: lines starting with it are passed over (torch.onnx's ``#`` comment lines); ``typed``: prefixed with
    the exception's type (the type alone when the message is empty)."""
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip() and not (skip and ln.startswith(skip))),
                "")[:limit]
    return (f"{type(exc).__name__}: {line}" if line else type(exc).__name__) if typed else line


def http_status_for(exc: BaseException) -> int:
    for cls, status in HTTP_STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_TEXT = re.compile(r"\[Errno (\d+)\] (No space left on device|Disk quota exceeded|File too large)|(database or disk is full)")


def storage_cause(exc: BaseException | None) -> OSError | None:
    """The disk-full ``OSError`` behind ``exc`` (itself, its causes or contexts), if any.

    Writes fail deep inside libraries (huggingface_hub, torch.onnx, SQLite) that
    wrap the ``OSError`` in their own exceptions, or only keep its text; the
    chain or the message still carries it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return exc
        match = _FULL_TEXT.search(str(exc))
        if match:
            code = int(match.group(1)) if match.group(1) else errno.ENOSPC
            return OSError(code, match.group(2) or match.group(3))
        exc = exc.__cause__ or exc.__context__
    return None


def as_storage_error(exc: BaseException) -> BaseException:
    """``exc``, or the StorageError it really is when a full disk lies behind it (the CLI and jobs alike)."""
    cause = None if isinstance(exc, StorageError) else storage_cause(exc)
    return storage_error(cause, exc) if cause is not None else exc


def storage_error(cause: OSError, during: BaseException | None = None) -> StorageError:
    context = f" ({str(during)[:200]})" if during is not None and not isinstance(during, OSError) else ""
    return StorageError(
        f"a write failed: {cause.strerror or cause} (errno {cause.errno}){context}; nothing was published",
        hint="free disk space (or raise the quota / file-size limit) under ZOO_HOME and HF_HOME, then run the "
             "command again; `zoo cache verify` checks what is stored",
    )


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_INTERNAL
