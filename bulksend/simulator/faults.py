"""The simulator's fault and load knobs, and the small strategies that apply them per request.

:class:`Faults` is one mutable dataclass: every knob is a constructor argument, a CLI flag
(``cli.py``) and an attribute tests may change while a campaign runs (``sim.faults.http_503_rate =
0.5``). Assignments are validated and normalised (a list of prefixes becomes a tuple), so a bad
value fails at the line that set it, not inside a request handler.

Per request, on the commands named in :attr:`Faults.commands` (by default the ones that send
messages: ``sendmsg`` and the batch interface's ``senditem`` and ``quicksend``):

* :meth:`Faults.draw` makes exactly one draw from the seeded generator and returns one
  :class:`Fault`. The rates are bands laid end to end in the order ``drop_before``, ``503``,
  ``901``, ``drop_after``: each is the exact probability of its fault as long as they sum to at
  most 1 (past 1 the later bands shrink). With the same ``seed`` and the same sequence of requests
  the same faults come out.
* :meth:`Faults.delay` is ``latency`` plus a uniform jitter in ``[-jitter, +jitter]``, never
  negative.
* ``per_recipient_latency`` is added to that delay for each number of a message request:
  processing time grows with the request, so batch size against latency is a real trade-off.
* :meth:`Faults.admit` is the ``throttle_mps`` token bucket, counted in **messages** (recipients;
  one message whatever its part count, as ``--rate`` counts them), not requests: it refills at
  ``throttle_mps`` per second and holds ``throttle_burst`` messages (default: one second's worth,
  ``throttle_mps``). A request is admitted when the bucket holds its size, or when the bucket is full
  for a request larger than the burst (which then leaves a debt: the gateway never refuses a
  request forever), and a refused request gets the seconds until it would be admitted. Over any
  window of ``T`` seconds at most ``throttle_mps * T + throttle_burst`` messages get through, plus
  one oversized request. Changing ``throttle_mps`` or ``throttle_burst`` refills the bucket.
  :meth:`Faults.retry_after` renders that wait as ``throttle_retry_after`` says: ``integer``
  (whole seconds, at least 1: what HTTP's delta-seconds allows), ``fractional`` (milliseconds, as
  some gateways send) or ``absent`` (no header).
* ``max_connections`` caps the requests the account may have in progress at once (counted from the
  request's arrival to its answer; idle keep-alive connections do not count). One more is answered
  as ``over_connections`` says: ``503`` (HTTP 503 + ``Retry-After: 1``) or ``refuse`` (the
  connection is closed at once); either way nothing is processed.
* :meth:`Faults.charge` takes credits from ``credit``, which is the live balance (``None`` is
  unlimited): the simulator charges it as messages are accepted, and a test may set it at any time
  to top up or drain the account. A request that cannot be paid for in full is not charged at all.

``reject_prefixes`` / ``reject_suffixes`` / ``reject_code``, ``session_ttl``, ``batch_ttl`` and
``batch_expire_every`` (batch ids, ``batches.py``) are read by the handlers directly; ``delivery_delay``, ``delivery_failure_rate``, ``callback_tries`` and
``callback_backoff``, ``reply_rate`` and ``reply_texts`` by the delivery-callback dispatcher (``callbacks.py``); see ``app.py`` for where in a request each knob applies.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from bulksend.simulator.codes import RECIPIENT_CODES

__all__ = [
    "COMMANDS",
    "DEFAULT_FAULT_COMMANDS",
    "DEFAULT_REPLY_TEXTS",
    "RETRY_AFTER_MODES",
    "Fault",
    "Faults",
    "retry_after_header",
]

RETRY_AFTER_MODES: frozenset[str] = frozenset({"integer", "fractional", "absent"})
OVER_CONNECTIONS: frozenset[str] = frozenset({"503", "refuse"})

COMMANDS: frozenset[str] = frozenset(
    {
        "auth",
        "ping",
        "sendmsg",
        "querymsg",
        "getmsgcharge",
        "getbalance",
        "delmsg",
        "routeCoverage",
        "startbatch",
        "senditem",
        "quicksend",
        "endbatch",
    }
)
"""The commands the simulator serves (``/http/<command>``, ``/http_batch/<command>``,
``/utils/routeCoverage.php``); faults may apply to any of them."""

DEFAULT_FAULT_COMMANDS: frozenset[str] = frozenset({"sendmsg", "senditem", "quicksend"})
"""The commands that send messages: faults apply to them unless told otherwise."""


DEFAULT_REPLY_TEXTS = ("STOP", "Stop please", "Thanks!", "Who is this?", "Stopwatch?")
"""The default mix of replies: two that opt out, three that do not (one only looks like it)."""


class Fault(Enum):
    """What happens to one request before (or instead of) its normal answer."""

    NONE = "none"
    DROP_BEFORE = "dropped_before"  # connection aborted, request not processed
    HTTP_503 = "http_503"  # HTTP 503 + Retry-After, not processed
    ERR_901 = "err_901"  # ERR: 901, not processed
    DROP_AFTER = "dropped_after"  # processed, then the connection is aborted: "maybe sent"


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _rate(value: object) -> float:
    rate = _number(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a fault rate must be within [0, 1], got {value!r}")
    return rate


def _non_negative(value: object) -> float:
    number = _number(value)
    if not number >= 0.0:  # also refuses NaN
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def _positive(value: object) -> float:
    number = _number(value)
    if not number > 0.0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def _optional(check: Callable[[object], float]) -> Callable[[object], float | None]:
    return lambda value: None if value is None else check(value)


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        raise TypeError(f"expected strings, got {value!r}")
    return tuple(str(item) for item in value)


def _digit_strings(value: object) -> tuple[str, ...]:
    out = _strings(value)
    for item in out:
        if not (item.isdigit() and item.isascii()):
            raise ValueError(f"a reject prefix/suffix must be digits, got {item!r}")
    return out


def _reply_texts(value: object) -> tuple[str, ...]:
    out = _strings(value)
    if not out:
        raise ValueError("reply_texts needs at least one text")
    return out


def _tries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"callback_tries must be an int >= 1, got {value!r}")
    return value


def _reject_code(value: object) -> int:
    if value not in RECIPIENT_CODES or not isinstance(value, int):
        raise ValueError(f"reject_code must be one of {sorted(RECIPIENT_CODES)}, got {value!r}")
    return value


def _seed(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"a seed is an int or None, got {value!r}")
    return value


def _choice(choices: frozenset[str]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"expected one of {sorted(choices)}, got {value!r}")
        return value

    return check


def _optional_count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected an int >= 1 or None, got {value!r}")
    return value


def _commands(value: object) -> frozenset[str]:
    out = frozenset(_strings(value))
    unknown = out - COMMANDS
    if unknown:
        raise ValueError(f"unknown command(s) {sorted(unknown)}; known: {sorted(COMMANDS)}")
    return out


_CHECKS: dict[str, Callable[[object], object]] = {
    "latency": _non_negative,
    "jitter": _non_negative,
    "http_503_rate": _rate,
    "err_901_rate": _rate,
    "drop_before_rate": _rate,
    "drop_after_rate": _rate,
    "throttle_mps": _optional(_positive),
    "throttle_burst": _optional(_positive),
    "throttle_retry_after": _choice(RETRY_AFTER_MODES),
    "per_recipient_latency": _non_negative,
    "max_connections": _optional_count,
    "over_connections": _choice(OVER_CONNECTIONS),
    "credit": _optional(_non_negative),
    "reject_prefixes": _digit_strings,
    "reject_suffixes": _digit_strings,
    "reject_code": _reject_code,
    "session_ttl": _positive,
    "batch_ttl": _positive,
    "batch_expire_every": _optional_count,
    "seed": _seed,
    "commands": _commands,
    "delivery_delay": _non_negative,
    "delivery_failure_rate": _rate,
    "callback_tries": _tries,
    "callback_backoff": _non_negative,
    "reply_rate": _rate,
    "reply_texts": _reply_texts,
}


@dataclass(slots=True, eq=False)
class Faults:
    """Every knob of the simulator; mutable and validated on every assignment."""

    latency: float = 0.0
    """Seconds added before answering (on :attr:`commands`)."""
    jitter: float = 0.0
    """Uniform ``±jitter`` seconds around ``latency``; the delay is never negative."""
    http_503_rate: float = 0.0
    """Probability of HTTP 503 with ``Retry-After: 1``, request not processed."""
    err_901_rate: float = 0.0
    """Probability of ``ERR: 901, Internal error - please retry``, request not processed."""
    drop_before_rate: float = 0.0
    """Probability of aborting the connection without processing the request."""
    drop_after_rate: float = 0.0
    """Probability of processing the request, then aborting the connection (answer lost)."""
    throttle_mps: float | None = None
    """Messages (recipients) per second allowed through; over it: HTTP 429 + Retry-After."""
    throttle_burst: float | None = None
    """Messages the throttle bucket holds (``None``: one second's worth, ``throttle_mps``)."""
    throttle_retry_after: str = "integer"
    """``Retry-After`` on a 429: ``integer`` (whole seconds >= 1), ``fractional`` or ``absent``."""
    per_recipient_latency: float = 0.0
    """Seconds of processing added per number of a ``sendmsg`` request (on top of ``latency``)."""
    max_connections: int | None = None
    """Requests the account may have in progress at once (``None``: no cap)."""
    over_connections: str = "503"
    """What one more request gets: ``503`` (HTTP 503 + ``Retry-After: 1``) or ``refuse`` (closed)."""
    credit: float | None = None
    """Live credit balance (``None``: unlimited); one credit per message part."""
    reject_prefixes: tuple[str, ...] = ()
    """Numbers starting with one of these are refused with :attr:`reject_code`."""
    reject_suffixes: tuple[str, ...] = ()
    """Numbers ending with one of these are refused with :attr:`reject_code`."""
    reject_code: int = 114
    """Per-recipient error for rejected numbers: one of ``codes.RECIPIENT_CODES``."""
    session_ttl: float = 900.0
    """Seconds of inactivity after which a session id answers ``ERR: 003``."""
    batch_ttl: float = 86400.0
    """Seconds after its ``startbatch`` at which a batch id answers ``ERR: 201`` (24 h)."""
    batch_expire_every: int | None = None
    """A batch id answers ``ERR: 201`` after this many message requests (``senditem`` or
    ``quicksend``) into it (``None``: never)."""
    seed: int | None = None
    """Seed of the fault generator (``None``: fresh randomness); setting it re-seeds."""
    commands: frozenset[str] = DEFAULT_FAULT_COMMANDS
    """Commands that latency, 503, 901 and drops apply to (the message-sending ones)."""
    delivery_delay: float = 0.05
    """Seconds from acceptance to status 003, and again from 003 to the final status."""
    delivery_failure_rate: float = 0.05
    """Share of messages whose final status is an error (005/007/009/010) instead of 004."""
    callback_tries: int = 8
    """Attempts per delivery callback before the simulator gives up on it."""
    callback_backoff: float = 0.1
    """Seconds before the first callback retry, doubling after each (0.1, 0.2, 0.4, ...)."""
    reply_rate: float = 0.0
    """Share of delivered messages whose recipient replies (a reply callback, ``callbacks.py``)."""
    reply_texts: tuple[str, ...] = DEFAULT_REPLY_TEXTS
    """What a recipient replies: one of these, drawn uniformly (a mix of STOPs and chatter)."""

    # State behind the knobs, set whenever ``seed`` / ``throttle_mps`` are assigned.
    _rng: random.Random = field(init=False, repr=False)
    _tokens: float = field(init=False, repr=False)
    _stamp: float = field(init=False, repr=False)

    def __setattr__(self, name: str, value: object) -> None:
        check = _CHECKS.get(name)
        if check is not None:
            value = check(value)
        object.__setattr__(self, name, value)
        if name == "seed":
            object.__setattr__(self, "_rng", random.Random(self.seed))
        elif name in ("throttle_mps", "throttle_burst"):
            self._refill()

    @property
    def burst(self) -> float:
        """Messages the throttle bucket holds (0 without a throttle)."""
        if self.throttle_mps is None:
            return 0.0
        return self.throttle_burst if self.throttle_burst is not None else self.throttle_mps

    def _refill(self) -> None:
        # During construction throttle_burst may not be set yet: getattr with a default.
        rate = getattr(self, "throttle_mps", None)
        burst = getattr(self, "throttle_burst", None)
        object.__setattr__(self, "_tokens", (burst if burst is not None else rate) or 0.0)
        object.__setattr__(self, "_stamp", time.monotonic())

    def draw(self) -> Fault:
        """One draw: which fault, if any, hits this request (see the module docstring)."""
        u = self._rng.random()
        edge = self.drop_before_rate
        if u < edge:
            return Fault.DROP_BEFORE
        edge += self.http_503_rate
        if u < edge:
            return Fault.HTTP_503
        edge += self.err_901_rate
        if u < edge:
            return Fault.ERR_901
        edge += self.drop_after_rate
        if u < edge:
            return Fault.DROP_AFTER
        return Fault.NONE

    def delay(self) -> float:
        """Seconds to wait before answering: ``latency ± jitter``, never negative (the handler
        adds ``per_recipient_latency`` per number of a ``sendmsg``)."""
        if self.jitter:
            return max(0.0, self.latency + self._rng.uniform(-self.jitter, self.jitter))
        return self.latency

    def retry_after(self, seconds: float) -> dict[str, str]:
        """The headers of a 429 that asks to wait ``seconds`` (``throttle_retry_after``)."""
        mode = self.throttle_retry_after
        if mode == "absent":
            return {}
        if mode == "fractional":
            return {"Retry-After": f"{max(0.001, seconds):.3f}"}
        return {"Retry-After": retry_after_header(seconds)}

    def admit(self, messages: int) -> float:
        """Take ``messages`` from the throttle bucket: 0.0 if admitted, else seconds to wait."""
        rate = self.throttle_mps
        if rate is None or messages <= 0:
            return 0.0
        burst = self.burst
        now = time.monotonic()
        tokens = min(burst, self._tokens + (now - self._stamp) * rate)
        object.__setattr__(self, "_stamp", now)
        need = min(float(messages), burst)
        if tokens >= need:
            object.__setattr__(self, "_tokens", tokens - messages)
            return 0.0
        object.__setattr__(self, "_tokens", tokens)
        return (need - tokens) / rate

    def charge(self, credits: float) -> bool:
        """Take ``credits`` from the balance if it covers them all; False (nothing taken) if not."""
        balance = self.credit
        if balance is None:
            return True
        if credits > balance:
            return False
        object.__setattr__(self, "credit", balance - credits)
        return True


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value for a wait: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
