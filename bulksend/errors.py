"""The one exception tree of bulksend.

Every error the project raises on purpose is a :class:`BulkSendError`. Messages name what went wrong
and where (file, row, gateway code) and never carry a secret: the password and session id are never
interpolated into a message, and :func:`redact` scrubs any that slip into text from outside (an
exception raised by a library, a URL, a gateway answer echoed back).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from threading import Lock

__all__ = [
    "BulkSendError",
    "CampaignLocked",
    "CampaignRepeated",
    "ConfigError",
    "ErrorClass",
    "GatewayError",
    "InputError",
    "ProtocolError",
    "StorageError",
    "forget_secrets",
    "redact",
    "register_secret",
]

_SECRET_PARAM = re.compile(r"(?i)\b(password|session_id|sessionid)=([^&\s'\"]+)")


_registered: set[str] = set()
_registered_lock = Lock()


def register_secret(secret: str) -> None:
    """Remember a secret (password, session id) so that :func:`redact` masks it everywhere."""
    if secret and len(secret) >= 4:
        with _registered_lock:
            _registered.add(secret)


def forget_secrets() -> None:
    """Forget every registered secret (tests; a long-lived process between campaigns)."""
    with _registered_lock:
        _registered.clear()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every registered or given secret and every ``password=`` /
    ``session_id=`` value masked as ``***``."""
    out = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", text)
    for secret in (*_registered, *secrets):
        if secret and secret in out:
            out = out.replace(secret, "***")
    return out


class BulkSendError(Exception):
    """Root of every error bulksend raises on purpose."""


class ConfigError(BulkSendError):
    """Settings are missing, contradictory or unsafe (bad profile, password in argv, ...)."""


class InputError(BulkSendError):
    """The recipient file, the text or another input cannot be used. Names file, row and reason."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(redact(where + message))
        self.path = path
        self.row = row
        self.reason = message


class CampaignLocked(BulkSendError):
    """Another process holds the campaign (its results file) or the receipts file. Nothing was
    sent or written. ``holder`` describes that process as it described itself (pid, host, start
    time, command line without secrets)."""

    def __init__(self, message: str, holder: dict[str, object] | None = None) -> None:
        super().__init__(redact(message))
        self.holder = holder or {}


class CampaignRepeated(BulkSendError):
    """The same list and message already went out from this account under another results file
    (see :mod:`bulksend.registry`), or the registry that would tell cannot be read. Nothing was
    sent. ``results`` names the earlier results file (empty when the registry was unreadable)."""

    def __init__(self, message: str, *, results: str) -> None:
        super().__init__(redact(message))
        self.results = results


class StorageError(BulkSendError):
    """A write, fsync or create of one of the campaign's files failed (disk full, quota, file too
    large, I/O error, read-only file system, permission). Names the file and the OS error."""

    def __init__(self, path: str, exc: OSError, action: str = "write") -> None:
        reason = exc.strerror or type(exc).__name__
        code = errno_name(exc.errno)
        super().__init__(
            redact(f"cannot {action} {path}: {reason}" + (f" ({code})" if code else ""))
        )
        self.path = path
        self.errno = exc.errno
        self.strerror = reason


def errno_name(number: int | None) -> str:
    """``28`` -> ``ENOSPC`` (empty for None or an unknown number)."""
    import errno

    return errno.errorcode.get(number, "") if number is not None else ""


class ProtocolError(BulkSendError):
    """The gateway answered something this protocol does not allow. Quotes the offending line."""

    MAX_QUOTE = 120

    def __init__(self, message: str, line: str | None = None) -> None:
        if line is not None:
            quoted = line if len(line) <= self.MAX_QUOTE else line[: self.MAX_QUOTE] + "…"
            message = f"{message}: {quoted!r}"
        super().__init__(redact(message))
        self.line = line


class ErrorClass(StrEnum):
    """What a sender must do about a gateway error code."""

    FATAL = "fatal"  # stop the campaign: auth, frozen account, no credit, IP lockdown
    RECIPIENT = "recipient"  # this number only; the rest of the batch is fine
    TRANSIENT = "transient"  # the gateway did not process it: safe to retry with backoff
    SESSION = "session"  # the session expired: re-authenticate and retry (not processed)
    REQUEST = "request"  # our request is wrong: a bug or bad settings, stops the campaign
    QUERY = "query"  # only meaningful for query calls (querymsg, delmsg, ...)


class GatewayError(BulkSendError):
    """The gateway refused a whole request with ``ERR: NNN, description``."""

    def __init__(self, code: int, description: str, error_class: ErrorClass) -> None:
        super().__init__(f"gateway error {code:03d} ({error_class.value}): {redact(description)}")
        self.code = code
        self.description = redact(description)
        self.error_class = error_class

    @property
    def fatal(self) -> bool:
        return self.error_class in (ErrorClass.FATAL, ErrorClass.REQUEST)
