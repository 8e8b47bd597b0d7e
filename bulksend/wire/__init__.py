"""Wire protocols: one pure module per Clickatell API behind one small interface.

This package owns the seam between the campaign pipeline (source -> batches -> bounded pool ->
journal) and the bytes a gateway speaks. A protocol object builds one request from a
:class:`Batch` of recipients and parses the gateway's answer into exactly one :class:`Outcome`
per recipient, in batch order; it does no I/O, so it is tested without a network, and the client
that sends its requests (:mod:`bulksend.client`) knows nothing of any protocol.

The protocols, one module each:

* :mod:`bulksend.wire.legacy` -- the legacy HTTP API's ``/http/sendmsg``: one text, up to 600
  numbers per POST (300 per GET). The fast path for a campaign that sends one text.
* :mod:`bulksend.wire.batch` -- the legacy ``/http_batch/`` interface: a template registered once
  (``startbatch``, its ``#name#`` placeholders as the positional ``#field1#`` … ``#fieldN#``),
  then one ``senditem`` per recipient with its values as ``field1`` … ``fieldN``.
* :mod:`bulksend.wire.one` -- the One API (``platform.clickatell.com``): JSON, up to 200 messages
  per request, each with its own content.

A fourth protocol is one more module here implementing :class:`WireProtocol`, plus a branch in
:meth:`bulksend.campaign.plan.Plan.make_wire`; the journal, retries, flow control and receipts stay
as they are.

What every protocol promises (see :class:`WireProtocol`):

* ``max_batch`` is the most recipients one request may carry; :meth:`WireProtocol.build` refuses
  more (:class:`~bulksend.errors.ProtocolError`) and never produces a request the gateway would
  refuse for its size.
* :meth:`WireProtocol.parse` never raises for anything the gateway says (any HTTP status, any
  body). Its :class:`Answer` has one outcome per batch item, matched by the recipient's number
  (never by position). An outcome is ``ACCEPTED`` only when the answer names that recipient with a
  message id; whatever the parser cannot tie to a recipient with certainty leaves it ``UNKNOWN``
  (maybe sent), never accepted. A ``REJECTED`` outcome carries its code's class.
* A whole-request refusal is :attr:`Answer.error`, a :class:`RequestError` carrying the code's
  :class:`~bulksend.errors.ErrorClass`, which tells the client what to do: ``TRANSIENT``: not
  processed, send again (after ``retry_after``); ``SESSION``: the protocol's session state is stale
  (:meth:`WireProtocol.invalidate`, then :meth:`WireProtocol.prepare` again and resend at once);
  ``RECIPIENT``: every recipient refused; ``FATAL`` / ``REQUEST``: stop the campaign. A refusal
  whose recipients may nevertheless have been processed has ``processed=True``: they are
  recorded ``unknown`` and the campaign stops.
* Session state (a legacy session id, a batch id) is obtained by the requests
  :meth:`WireProtocol.prepare` asks for, one :class:`Step` at a time, and dropped by
  :meth:`WireProtocol.invalidate`. Steps never send a message; the client runs them under one
  lock, so concurrent senders share one login.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from bulksend.errors import ErrorClass

__all__ = [
    "Answer",
    "Batch",
    "BatchItem",
    "Outcome",
    "Request",
    "RequestError",
    "Step",
    "Verdict",
    "WireProtocol",
    "retry_after",
]


class BatchItem(NamedTuple):
    """One recipient as a tuple (the One API module's item-wise ``build``/``parse``): the row it
    came from, its number and its content."""

    row: int
    msisdn: str
    content: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Recipients sent in one request, as the pipeline carries them: parallel lists.

    ``contents`` is ``None`` when every recipient gets the campaign's one text (the protocol holds
    it); otherwise the rendered text per recipient. ``fields`` holds the template's field values
    per recipient for a protocol that fills the template itself (the batch interface).
    """

    rows: list[int]
    msisdns: list[str]
    contents: list[str] | None = None
    fields: list[tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            self.rows[start:stop],
            self.msisdns[start:stop],
            None if self.contents is None else self.contents[start:stop],
            None if self.fields is None else self.fields[start:stop],
        )


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the gateway took the message: api_msg_id is its id
    REJECTED = "rejected"  # the gateway refused this message: certainly not sent
    UNKNOWN = "unknown"  # the answer does not say for certain: maybe sent, never retried blindly


class Outcome(NamedTuple):
    """What the answer says about one batch item (a tuple: a campaign makes one per recipient).

    ``error_class`` is ``None`` for an accepted message and for an anomaly (a recipient the answer
    does not account for); otherwise it is the class of ``code``: for a ``REJECTED`` outcome
    ``RECIPIENT`` means "this number only", ``TRANSIENT`` "this message was not processed, it may
    be sent again", ``FATAL``/``REQUEST`` "stop the campaign".
    """

    verdict: Verdict
    api_msg_id: str = ""
    code: int = 0
    description: str = ""
    error_class: ErrorClass | None = None


_new_outcome = tuple.__new__


@dataclass(frozen=True, slots=True)
class RequestError:
    """The gateway refused (or did not process) the request as a whole."""

    code: int
    """The gateway's error code; 0 when only the HTTP status spoke."""
    description: str
    error_class: ErrorClass
    http_status: int
    retry_after: float | None = None
    """Seconds the gateway asked us to wait (``Retry-After``), when it did."""
    processed: bool = False
    """Some recipients may have been processed anyway (a contradictory answer): they are
    recorded unknown, never sent again."""

    def __str__(self) -> str:
        code = f"error {self.code:03d}" if self.code else f"HTTP {self.http_status}"
        return f"gateway {code} ({self.error_class.value}): {self.description}"


class Answer:
    """A parsed answer: ``outcomes[i]`` belongs to ``batch[i]``.

    A clean answer (the common case) may be given without per-recipient objects: ``api_ids[i]`` is
    the id for recipient ``i`` or ``None``, and ``rejections`` maps each number that was not
    accepted to its outcome; ``outcomes`` is then built only when asked for, so a campaign whose
    recipients are all accepted never builds one object per recipient.
    """

    __slots__ = (
        "_numbers",
        "_outcomes",
        "anomalies",
        "api_ids",
        "error",
        "rejections",
        "unknown_reason",
    )

    def __init__(
        self,
        outcomes: Sequence[Outcome] | None = None,
        error: RequestError | None = None,
        anomalies: Sequence[str] = (),
        *,
        api_ids: Sequence[str | None] | None = None,
        rejections: Mapping[str, Outcome] | None = None,
        numbers: Sequence[str] = (),
    ) -> None:
        self._outcomes = tuple(outcomes) if outcomes is not None else None
        self.error = error
        self.anomalies = tuple(anomalies)
        self.api_ids = api_ids
        self.rejections = rejections if rejections is not None else {}
        self._numbers = numbers
        self.unknown_reason = ""
        """Set when the answer as a whole says nothing certain (unreadable, an unexpected HTTP
        status): the reason, for the log and the results."""

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        if self._outcomes is None:
            accepted = Verdict.ACCEPTED
            self._outcomes = tuple(
                _new_outcome(Outcome, (accepted, api_id, 0, "", None))
                if api_id is not None
                else self.rejections[number]
                for number, api_id in zip(self._numbers, self.api_ids or (), strict=True)
            )
        return self._outcomes

    @classmethod
    def refused(cls, size: int, error: RequestError) -> Answer:
        """A whole-request refusal: every recipient ``UNKNOWN`` with the error's code and class."""
        outcome = Outcome(Verdict.UNKNOWN, "", error.code, error.description, error.error_class)
        return cls((outcome,) * size, error=error)

    @classmethod
    def unknown(cls, size: int, reason: str) -> Answer:
        """An answer that says nothing certain: every recipient maybe sent."""
        answer = cls((Outcome(Verdict.UNKNOWN, description=reason),) * size, anomalies=(reason,))
        answer.unknown_reason = reason
        return answer

    def __repr__(self) -> str:
        return f"Answer(outcomes={self.outcomes!r}, error={self.error!r}, anomalies={self.anomalies!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, ready to send. Header values and the body may hold a secret: ``repr``
    shows header names and the body's size only."""

    method: str
    path: str
    """Relative to the gateway's base URL, e.g. ``/v1/message``; a GET carries its query."""
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        path = self.path.split("?", 1)[0]
        return f"Request({self.method} {path}, {len(self.body)} bytes, headers: {names})"


class Step(NamedTuple):
    """A request that obtains session state (log in, register a template): never a message."""

    name: str
    request: Request


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (any letter case); ``None`` when absent, negative, not
    finite or an HTTP date (the client's own backoff applies then)."""
    value = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class WireProtocol(Protocol):
    """What the pipeline needs of a wire protocol."""

    @property
    def name(self) -> str:
        """Short name for logs and the summary: ``sendmsg``, ``batch``, ``one``."""
        ...

    @property
    def max_batch(self) -> int:
        """The most recipients one request may carry."""
        ...

    def prepare(self, batch: Batch | None) -> Step | None:
        """The next request needed before ``batch`` (``None``: before any batch) can be built,
        or ``None`` when the protocol is ready. Cheap when ready: it is asked before every
        request."""
        ...

    def prepared(self, step: Step, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Take in a step's answer; :class:`~bulksend.errors.GatewayError` (with its class) when
        the gateway refused it, :class:`~bulksend.errors.ProtocolError` when unreadable."""
        ...

    def invalidate(self, error: RequestError) -> None:
        """Forget the session state ``error`` (of class ``SESSION``) says is stale."""
        ...

    def build(self, batch: Batch) -> Request:
        """The request that sends ``batch`` (1..max_batch items); ProtocolError if it cannot."""
        ...

    def parse(self, status: int, headers: Mapping[str, str], body: bytes, batch: Batch) -> Answer:
        """The gateway's answer to the request built from ``batch``, one outcome per item."""
        ...

    def finish(self) -> list[Request]:
        """Requests that close the protocol's session state at the end of a campaign (best
        effort: their answers are not needed)."""
        ...
