"""The ledger: every message the simulator accepted, the proof that nothing was lost or sent twice.

The ledger owns the API message ids. :meth:`Ledger.accept` issues one id per accepted message and
records the request as one batch holding its numbers as one comma-joined string, with no object
per message: about 15 bytes of memory per message (13 M messages grow a process by about 200 MB).
A ledger made with ``keep_numbers=False`` (the server process of ``bulksend simulate``, whose
record is its CSV file) does not keep the numbers at all, about 0.5 byte per message: then
:meth:`Ledger.find` still answers ``querymsg`` (with an empty ``to``) but the per-message views
raise :class:`RuntimeError`. :meth:`Ledger.accept_messages` records a request whose messages each
have their own text (the One API's personalised requests) the same way, as one batch and one CSV
write: a column whose values differ is kept as a tuple (8 bytes a message, plus the texts).

Message ids are 32 lowercase hex characters: a random 16-hex prefix per ledger, then a 64-bit
serial number in two scrambled pieces: its high 48 bits multiplied by an odd constant modulo
2**48 and XORed with a random key (12 hex), its low 16 bits looked up in a table that permutes the
65536 four-hex strings (4 hex). Both maps are bijections, so ids are unique per ledger without any
set, do not look sequential, and invert to their serial, which is how :meth:`Ledger.find` answers
``querymsg`` with no index at all. The table makes an id one string concatenation done in C.

Promises:

* ``len(ledger)`` is the number of accepted messages; :attr:`Ledger.entries`, :meth:`by_number`,
  :meth:`count_for` and iteration give :class:`LedgerEntry` rows in acceptance order (built lazily
  and incrementally, so asking costs nothing on the hot path).
* With a file open (:meth:`Ledger.open`), every accepted message is written as a CSV row
  ``to,api_msg_id,climsgid,parts,time,text,options,status`` (text always quoted) and the file is
  flushed to the operating system before :meth:`accept` returns, that is before the answer is
  sent: a simulator process killed at any moment (even SIGKILL) leaves in the file every message
  whose answer it sent, and every message of a processed request whose answer it was about to
  send, unless the kill tore that very write. :func:`read_ledger` reads the file back and skips a
  torn last row; it also reads the older six-column files (``options`` empty, ``status`` 003).
* ``options`` is every other parameter the request carried, as sent (``name=value&...``, names
  sorted, URL-encoded; never the credentials): :attr:`LedgerEntry.option_map` reads it back.
  ``status`` is what the gateway recorded: ``003`` for a message sent at once, ``011`` for one
  scheduled for later (``deliv_time``/``scheduled_time``), ``006`` once :meth:`Ledger.cancel`
  stopped it. A stop is appended to the file as an update row ``to,api_msg_id,,,time,"",,006``
  (empty ``parts``), flushed before ``delmsg`` answers; :func:`read_ledger` folds it into the
  message's entry, so the file stays append-only and an entry is still one message.
  Delivery progress (003 → 004 ...) is not recorded: that is :meth:`Ledger.status`.
* :attr:`Ledger.listeners` are called with an :class:`AcceptedBatch` after each accepted request
  (the hook for delivery receipts); :meth:`status` is each message's status: ``011`` while a
  scheduled message waits for its time (its ``due``, on the monotonic clock), then ``003`` until
  :meth:`set_status` moves it on; ``006`` for ever once stopped. A ledger without numbers still
  keeps those of scheduled requests, which ``delmsg`` callbacks need.
"""

from __future__ import annotations

import csv
import functools
import os
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

from bulksend.simulator.codes import (
    STATUS_CANCELLED,
    STATUS_DELIVERED_TO_GATEWAY,
    STATUS_SCHEDULED,
)
from bulksend.simulator.message import parse_options

__all__ = [
    "CSV_HEADER",
    "CSV_HEADER_V1",
    "STATUS_CANCELLED",
    "STATUS_SCHEDULED",
    "AcceptedBatch",
    "Ledger",
    "LedgerEntry",
    "read_ledger",
]

CSV_HEADER = "to,api_msg_id,climsgid,parts,time,text,options,status"
CSV_HEADER_V1 = "to,api_msg_id,climsgid,parts,time,text"
"""The header of ledgers written before options and status were recorded (still readable)."""
_CANCELLED_CODE = int(STATUS_CANCELLED)

# Odd multipliers, so multiplication modulo a power of two is a bijection with an inverse.
_LOW_SIZE = 1 << 16
_LOW_MASK = _LOW_SIZE - 1
_LOW_SCRAMBLE = 0x9E37
_LOW_UNSCRAMBLE = pow(_LOW_SCRAMBLE, -1, _LOW_SIZE)
_HIGH_MASK = (1 << 48) - 1
_HIGH_SCRAMBLE = 0x9E3779B97F4B
_HIGH_UNSCRAMBLE = pow(_HIGH_SCRAMBLE, -1, 1 << 48)


@functools.cache
def _low_digits() -> tuple[str, ...]:
    """The last four hex digits of an id, indexed by the serial's low 16 bits (built once)."""
    return tuple(f"{(low * _LOW_SCRAMBLE) & _LOW_MASK:04x}" for low in range(_LOW_SIZE))


class LedgerEntry(NamedTuple):
    """One accepted message, in the column order of the ledger CSV."""

    to: str
    api_msg_id: str
    climsgid: str
    parts: int
    time: float
    text: str
    options: str = ""
    """The request's other parameters as sent, ``name=value&...`` (see :attr:`option_map`)."""
    status: str = STATUS_DELIVERED_TO_GATEWAY
    """Recorded status: ``003`` sent at once, ``011`` scheduled, ``006`` stopped by delmsg."""

    @property
    def option_map(self) -> dict[str, str]:
        """The options as a dict, e.g. ``{"msg_type": "SMS_FLASH", "deliv_time": "60"}``."""
        return parse_options(self.options)

    @property
    def cancelled(self) -> bool:
        """Stopped by ``delmsg`` before it left (never delivered, credit refunded)."""
        return self.status == STATUS_CANCELLED


@dataclass(frozen=True, slots=True)
class AcceptedBatch:
    """The messages one request got accepted, as ledger listeners receive them."""

    numbers: list[str]
    api_msg_ids: list[str]
    text: str
    climsgid: str
    parts: int
    time: float
    sender: str
    callback: int
    options: str = ""
    due: float = 0.0
    """When the messages leave (``time.monotonic()``); 0.0: at once."""


class _Batch(NamedTuple):
    """One accepted request. The per-message columns (text, climsgid, parts, sender, options)
    hold one value for the whole batch, or a tuple with one value per message
    (:meth:`Ledger.accept_messages`); :func:`_at` reads either."""

    first_serial: int
    numbers: str  # comma-joined
    size: int
    text: str | tuple[str, ...]
    climsgid: str | tuple[str, ...]
    parts: int | tuple[int, ...]
    time: float
    sender: str | tuple[str, ...]
    callback: int
    options: str | tuple[str, ...]
    due: float  # monotonic; 0.0 = not scheduled


_T = TypeVar("_T", str, int)


def _at(column: _T | tuple[_T, ...], offset: int) -> _T:
    """The value of a batch column for the message at ``offset``."""
    return column[offset] if isinstance(column, tuple) else column


def _column(values: Sequence[_T]) -> _T | tuple[_T, ...]:
    """One value when every message has the same (the usual sender, options, parts), else a
    tuple of them."""
    first = values[0]
    if values.count(first) == len(values):
        return first
    return tuple(values)


class Ledger:
    """Accepted messages of one simulator, in memory and optionally in a CSV file."""

    def __init__(self, *, keep_numbers: bool = True) -> None:
        self.keep_numbers = keep_numbers
        self._prefix = os.urandom(8).hex()
        self._key = int.from_bytes(os.urandom(6))
        self._next_serial = 0
        self._batches: list[_Batch] = []
        self._starts: list[int] = []
        self._count = 0
        self._statuses: dict[str, str] = {}  # statuses of foreign ids / odd codes only
        self._status_codes = bytearray()  # serial -> status code, 0 = never set (003)
        self._file: IO[str] | None = None
        self._entries: list[LedgerEntry] = []
        self._by_number: dict[str, list[LedgerEntry]] = {}
        self._materialized = 0  # batches already expanded into _entries
        self.listeners: list[Callable[[AcceptedBatch], None]] = []

    # -- writing -------------------------------------------------------------------------------

    def open(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        """Write every accepted message to the CSV file ``path`` from now on."""
        self.close()
        target = Path(path)
        fresh = not append or not target.exists() or target.stat().st_size == 0
        handle = target.open(
            "a" if append else "w",
            encoding="utf-8",
            errors="backslashreplace",
            newline="",
        )
        if fresh:
            handle.write(CSV_HEADER + "\n")
            handle.flush()
        self._file = handle

    def close(self) -> None:
        """Flush and close the CSV file, if one is open."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def accept(
        self,
        numbers: list[str],
        text: str,
        *,
        climsgid: str = "",
        parts: int = 1,
        sender: str = "",
        callback: int = 0,
        joined: str | None = None,
        options: str = "",
        due: float = 0.0,
    ) -> list[str]:
        """Record one message per number (same text), return their new API message ids.

        ``joined`` is ``",".join(numbers)`` when the caller already holds it (saves a copy);
        ``due`` (``time.monotonic()``, 0.0 for none) makes them scheduled messages.
        """
        start = self._next_serial
        count = len(numbers)
        self._next_serial = start + count
        ids = self._issue(start, count)
        now = round(time.time(), 6)  # what the CSV keeps, so file and memory agree
        self._batches.append(
            _Batch(
                start,
                ""
                if not (self.keep_numbers or due)
                else ",".join(numbers)
                if joined is None
                else joined,
                count,
                text,
                climsgid,
                parts,
                now,
                sender,
                callback,
                options,
                due,
            )
        )
        self._starts.append(start)
        self._count += count
        if self._file is not None:
            quoted = _quote(text)
            status = STATUS_SCHEDULED if due else STATUS_DELIVERED_TO_GATEWAY
            tail = f",{climsgid},{parts},{now:.6f},{quoted},{options},{status}\n"
            self._file.write(tail.join(map(",".join, zip(numbers, ids, strict=True))) + tail)
            self._file.flush()
        if self.listeners:
            batch = AcceptedBatch(
                numbers, ids, text, climsgid, parts, now, sender, callback, options, due
            )
            for listener in self.listeners:
                listener(batch)
        return ids

    def accept_messages(
        self,
        numbers: list[str],
        texts: Sequence[str],
        *,
        climsgids: Sequence[str],
        parts: Sequence[int],
        senders: Sequence[str],
        options: Sequence[str],
        callback: int = 0,
        due: float = 0.0,
    ) -> list[str]:
        """Record one message per number, each with its own text, client message id, parts,
        sender and options (the One API's personalised requests), as one batch with one CSV
        write; return their new API message ids in order.

        The same record as calling :meth:`accept` once per message (same entries, same file
        rows), at a fraction of the cost. Listeners get one :class:`AcceptedBatch` per group of
        messages that share text, client id, parts, sender and options (with every message
        different: one per message)."""
        count = len(numbers)
        if not count:
            return []
        if not count == len(texts) == len(climsgids) == len(parts) == len(senders) == len(options):
            raise ValueError(
                "accept_messages needs one text, id, parts, sender, options per number"
            )
        start = self._next_serial
        self._next_serial = start + count
        ids = self._issue(start, count)
        now = round(time.time(), 6)
        text_column = _column(texts)
        id_column = _column(climsgids)
        parts_column = _column(parts)
        sender_column = _column(senders)
        options_column = _column(options)
        self._batches.append(
            _Batch(
                start,
                ",".join(numbers) if self.keep_numbers or due else "",
                count,
                text_column,
                id_column,
                parts_column,
                now,
                sender_column,
                callback,
                options_column,
                due,
            )
        )
        self._starts.append(start)
        self._count += count
        if self._file is not None:
            status = STATUS_SCHEDULED if due else STATUS_DELIVERED_TO_GATEWAY
            stamp = f"{now:.6f}"
            self._file.write(
                "".join(
                    f"{to},{api_msg_id},{climsgid},{n},{stamp},{_quote(text)},{option},{status}\n"
                    for to, api_msg_id, climsgid, n, text, option in zip(
                        numbers, ids, climsgids, parts, texts, options, strict=True
                    )
                )
            )
            self._file.flush()
        if self.listeners:
            groups: dict[tuple[str, str, int, str, str], list[int]] = {}
            for i, key in enumerate(zip(texts, climsgids, parts, senders, options, strict=True)):
                groups.setdefault(key, []).append(i)
            for (text, climsgid, n, sender, option), positions in groups.items():
                batch = AcceptedBatch(
                    [numbers[i] for i in positions],
                    [ids[i] for i in positions],
                    text,
                    climsgid,
                    n,
                    now,
                    sender,
                    callback,
                    option,
                    due,
                )
                for listener in self.listeners:
                    listener(batch)
        return ids

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries)

    @property
    def entries(self) -> list[LedgerEntry]:
        """Every accepted message in acceptance order (a fresh list)."""
        self._materialize()
        return list(self._entries)

    def by_number(self) -> dict[str, list[LedgerEntry]]:
        """Accepted messages grouped by destination number."""
        self._materialize()
        return {number: list(rows) for number, rows in self._by_number.items()}

    def count_for(self, to: str) -> int:
        """How many messages were accepted for number ``to``."""
        self._materialize()
        return len(self._by_number.get(to, ()))

    def find(self, api_msg_id: str) -> LedgerEntry | None:
        """The message with this API id, or None; O(log batches), no index kept."""
        serial = self._serial(api_msg_id.lower())
        if serial is None:
            return None
        batch = self._batch_of(serial)
        return self._entry(batch, serial - batch.first_serial, batch.numbers.split(","))

    def find_by_climsgid(self, climsgid: str) -> LedgerEntry | None:
        """The first message of the latest request sent with this client message id, or None."""
        if not climsgid:
            return None
        for batch in reversed(self._batches):
            ids = batch.climsgid
            if ids == climsgid:
                return self._entry(batch, 0, batch.numbers.split(","))
            if isinstance(ids, tuple) and climsgid in ids:
                return self._entry(batch, ids.index(climsgid), batch.numbers.split(","))
        return None

    def status(self, api_msg_id: str, now: float | None = None) -> str:
        """The message's status code (three digits): ``011`` while scheduled for later (``now``
        is ``time.monotonic()`` by default), then ``003`` until set otherwise."""
        serial = self._serial(api_msg_id)
        if serial is None:
            return self._statuses.get(api_msg_id, STATUS_DELIVERED_TO_GATEWAY)
        code = self._code(serial)
        if code:
            return f"{code:03d}"
        odd = self._statuses.get(api_msg_id)
        if odd is not None:
            return odd
        due = self._batch_of(serial).due
        if due and due > (time.monotonic() if now is None else now):
            return STATUS_SCHEDULED
        return STATUS_DELIVERED_TO_GATEWAY

    def callback_of(self, api_msg_id: str) -> int:
        """The callback value the message was sent with (0 for an id not of this ledger)."""
        serial = self._serial(api_msg_id)
        return 0 if serial is None else self._batch_of(serial).callback

    def delay_of(self, api_msg_id: str) -> float:
        """Seconds from the message's acceptance to its leaving (0.0 unless scheduled)."""
        serial = self._serial(api_msg_id)
        if serial is None:
            return 0.0
        batch = self._batch_of(serial)
        if not batch.due:
            return 0.0
        return max(0.0, time.time() + (batch.due - time.monotonic()) - batch.time)

    def is_cancelled(self, api_msg_id: str) -> bool:
        """Whether :meth:`cancel` stopped this message."""
        serial = self._serial(api_msg_id)
        return serial is not None and self._code(serial) == _CANCELLED_CODE

    def cancel(self, api_msg_id: str, now: float | None = None) -> AcceptedBatch | None:
        """Stop a message that has not left yet (``delmsg``): its status becomes ``006`` for
        good, in memory and in the file. Returns the stopped message as a one-message batch, or
        None when there is nothing to stop (unknown id, not scheduled, already due, already
        decided or already stopped). ``now`` is ``time.monotonic()`` by default."""
        serial = self._serial(api_msg_id.lower())
        if serial is None or self._code(serial):
            return None
        batch = self._batch_of(serial)
        if not batch.due or batch.due <= (time.monotonic() if now is None else now):
            return None
        self.set_status(self._api_msg_id(serial), STATUS_CANCELLED)
        entry = self._entry(batch, serial - batch.first_serial, batch.numbers.split(","))
        if self._file is not None:
            stamp = f"{time.time():.6f}"
            self._file.write(f'{entry.to},{entry.api_msg_id},,,{stamp},"",,{STATUS_CANCELLED}\n')
            self._file.flush()
        if serial < len(self._entries):  # already materialised: keep the views in step
            old = self._entries[serial]
            self._entries[serial] = entry
            same_number = self._by_number[old.to]
            same_number[same_number.index(old)] = entry
        offset = serial - batch.first_serial
        return AcceptedBatch(
            [entry.to],
            [entry.api_msg_id],
            entry.text,
            entry.climsgid,
            entry.parts,
            batch.time,
            _at(batch.sender, offset),
            batch.callback,
            entry.options,
            batch.due,
        )

    def set_status(self, api_msg_id: str, status: str) -> None:
        """Move a message to a new status (for delivery receipts). A status of one of our ids
        costs one byte per message (a bytearray indexed by serial), not a dict entry."""
        serial = self._serial(api_msg_id)
        if serial is None or not (status.isdigit() and status.isascii() and 0 < int(status) < 256):
            self._statuses[api_msg_id] = status
            return
        codes = self._status_codes
        if serial >= len(codes):
            codes.extend(bytes(max(serial + 1 - len(codes), len(codes) // 2 + 4096)))
        codes[serial] = int(status)

    def _code(self, serial: int) -> int:
        """The status byte of a serial: 0 when never set."""
        codes = self._status_codes
        return codes[serial] if serial < len(codes) else 0

    def _batch_of(self, serial: int) -> _Batch:
        return self._batches[bisect_right(self._starts, serial) - 1]

    def _serial(self, api_msg_id: str) -> int | None:
        """The serial number of one of this ledger's ids (lowercase), else None."""
        if len(api_msg_id) != 32 or not api_msg_id.startswith(self._prefix):
            return None
        try:
            high, low = int(api_msg_id[16:28], 16), int(api_msg_id[28:], 16)
        except ValueError:
            return None
        high = ((high ^ self._key) * _HIGH_UNSCRAMBLE) & _HIGH_MASK
        serial = (high << 16) | ((low * _LOW_UNSCRAMBLE) & _LOW_MASK)
        if serial >= self._next_serial or api_msg_id != self._api_msg_id(serial):
            return None
        return serial

    def _head(self, high: int) -> str:
        """The first 28 hex digits of the ids whose serial has these high 48 bits."""
        return f"{self._prefix}{((high * _HIGH_SCRAMBLE) & _HIGH_MASK) ^ self._key:012x}"

    def _api_msg_id(self, serial: int) -> str:
        return self._head(serial >> 16) + _low_digits()[serial & _LOW_MASK]

    def _issue(self, start: int, count: int) -> list[str]:
        """The ids of serials ``start .. start+count-1``, one concatenation each."""
        low_digits = _low_digits()
        ids: list[str] = []
        serial, end = start, start + count
        while serial < end:
            low = serial & _LOW_MASK
            take = min(end - serial, _LOW_SIZE - low)
            ids += map(self._head(serial >> 16).__add__, low_digits[low : low + take])
            serial += take
        return ids

    def _entry(self, batch: _Batch, offset: int, numbers: list[str]) -> LedgerEntry:
        serial = batch.first_serial + offset
        if self._code(serial) == _CANCELLED_CODE:
            status = STATUS_CANCELLED
        elif batch.due:
            status = STATUS_SCHEDULED
        else:
            status = STATUS_DELIVERED_TO_GATEWAY
        return LedgerEntry(
            numbers[offset] if batch.numbers else "",
            self._api_msg_id(serial),
            _at(batch.climsgid, offset),
            _at(batch.parts, offset),
            batch.time,
            _at(batch.text, offset),
            _at(batch.options, offset),
            status,
        )

    def _materialize(self) -> None:
        if not self.keep_numbers:
            raise RuntimeError("this ledger keeps no numbers in memory: read its CSV file instead")
        by_number = self._by_number
        for batch in self._batches[self._materialized :]:
            numbers = batch.numbers.split(",")
            for offset in range(batch.size):
                entry = self._entry(batch, offset, numbers)
                self._entries.append(entry)
                by_number.setdefault(entry.to, []).append(entry)
        self._materialized = len(self._batches)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def read_ledger(path: str | os.PathLike[str]) -> list[LedgerEntry]:
    """Read a ledger CSV written by :meth:`Ledger.open` (either header); a torn last row is
    skipped, and update rows (a stop) are folded into the entry they update."""
    entries: list[LedgerEntry] = []
    where: dict[str, int] | None = None  # api_msg_id -> index, built at the first update row
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        joined = None if header is None else ",".join(header)
        if joined is not None and joined not in (CSV_HEADER, CSV_HEADER_V1):
            raise ValueError(f"{path}: not a simulator ledger (header {header!r})")
        width = 6 if joined == CSV_HEADER_V1 else 8
        for row in reader:
            if len(row) != width:
                continue
            if width == 6:
                row += ["", STATUS_DELIVERED_TO_GATEWAY]
            to, api_msg_id, climsgid, parts, stamp, text, options, status = row
            if len(status) != 3 or not status.isdigit():
                continue  # torn inside the last field
            if not parts:
                if where is None:
                    where = {entry.api_msg_id: i for i, entry in enumerate(entries)}
                index = where.get(api_msg_id)
                if index is not None:
                    entries[index] = entries[index]._replace(status=status)
                continue
            try:
                entry = LedgerEntry(
                    to, api_msg_id, climsgid, int(parts), float(stamp), text, options, status
                )
            except ValueError:
                continue
            if where is not None:
                where[api_msg_id] = len(entries)
            entries.append(entry)
    return entries
