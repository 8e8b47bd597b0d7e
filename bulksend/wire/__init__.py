"""Wire protocols: one pure module per Clickatell API behind one small interface.

This package owns the seam between the campaign pipeline (source -> batches -> bounded pool ->
journal) and the bytes a gateway speaks. A protocol module builds one request from a batch of
recipients and parses the gateway's answer into exactly one :class:`Outcome` per recipient, in
batch order; it does no I/O, so it is tested without a network and the client that sends its
requests stays protocol-independent.

What every protocol promises (see :class:`WireProtocol`):

* ``max_batch`` is the most recipients one request may carry; :meth:`WireProtocol.build` refuses
  more (:class:`~bulksend.errors.ProtocolError`) and never produces a request the gateway would
  refuse for its size.
* :meth:`WireProtocol.parse` never raises for anything the gateway says. Its :class:`Answer` has
  one outcome per batch item, matched by the recipient's number (never by position). An outcome is
  ``ACCEPTED`` only when the answer names that recipient with a message id; whatever the parser
  cannot tie to a recipient with certainty leaves it ``UNKNOWN`` (maybe sent), never accepted.
* A whole-request refusal is :attr:`Answer.error`, a :class:`RequestError` carrying the code's
  :class:`~bulksend.errors.ErrorClass`; its recipients are all ``UNKNOWN`` with that code, and the
  class tells the pipeline what to do (``TRANSIENT``: not processed, send again; ``FATAL`` /
  ``REQUEST``: stop the campaign).

The protocols: :mod:`bulksend.wire.one` (the One API, JSON). The legacy ``sendmsg`` protocol still
lives in :mod:`bulksend.protocol` until it moves behind this interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from bulksend.errors import ErrorClass

__all__ = [
    "Answer",
    "BatchItem",
    "Outcome",
    "Request",
    "RequestError",
    "Verdict",
    "WireProtocol",
]


class BatchItem(NamedTuple):
    """One recipient of a batch: the row it came from, its number and its rendered content."""

    row: int
    msisdn: str
    content: str


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the gateway took the message: api_msg_id is its id
    REJECTED = "rejected"  # the gateway refused this message: certainly not sent
    UNKNOWN = "unknown"  # the answer does not say for certain: maybe sent, never retried blindly


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the answer says about one batch item.

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


@dataclass(frozen=True, slots=True)
class Answer:
    """A parsed answer: ``outcomes[i]`` belongs to ``batch[i]``."""

    outcomes: tuple[Outcome, ...]
    error: RequestError | None = None
    anomalies: tuple[str, ...] = ()
    """What did not fit (unknown numbers, duplicates, malformed entries), for the log."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, ready to send. Header values may hold a secret: ``repr`` shows names only."""

    method: str
    path: str
    """Relative to the gateway's base URL, e.g. ``/v1/message``."""
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    def header_map(self) -> dict[str, str]:
        return dict(self.headers)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.headers)
        return f"Request({self.method} {self.path}, {len(self.body)} bytes, headers: {names})"


class WireProtocol(Protocol):
    """What the pipeline needs of a wire protocol."""

    @property
    def max_batch(self) -> int:
        """The most recipients one request may carry."""
        ...

    def build(self, batch: Sequence[BatchItem]) -> Request:
        """The request that sends ``batch`` (1..max_batch items); ProtocolError if it cannot."""
        ...

    def parse(
        self, status: int, headers: Mapping[str, str], body: bytes, batch: Sequence[BatchItem]
    ) -> Answer:
        """The gateway's answer to the request built from ``batch``, one outcome per item."""
        ...
