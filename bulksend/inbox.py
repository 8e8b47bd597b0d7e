"""A receiver's replies: the replies file, and the opt-out list that STOP replies feed.

:class:`Inbox` is what :class:`~bulksend.receipts.ReceiptServer` hands each reply callback
(:class:`~bulksend.replies.Reply`). What it promises:

* **Once per reply.** A reply is one line of the replies file (:data:`~bulksend.replies.
  REPLIES_HEADER`, mode 0600) however often the gateway repeats its callback: the key is its
  ``moMsgId`` / ``messageId``, rebuilt from the file when a receiver reopens it.
* **Durable before the answer,** as receipts are (:mod:`bulksend.appendfile`): the future of
  :meth:`Inbox.store` resolves once the reply's line (and its opt-out line) went out in a
  ``write(2)``; the owner fsyncs both files on its timer and at close.
* **Opt-outs stick.** A reply whose first word(s) are an opt-out keyword
  (:class:`~bulksend.replies.OptOutKeywords`) is stored with ``opt_out=1`` and, when an opt-out
  file is given, its number is appended to it once, as ``+<international digits>``: the format
  ``--exclude`` reads (:mod:`bulksend.optout`). Numbers already in the file (in any format that
  list reader takes for international numbers: ``+27...``, ``27...``, ``0027...``) are not added
  again. The opt-out line is submitted before the reply's, and on opening the inbox appends every
  opted-out number of the replies file that the opt-out file lacks, so a crash between the two
  writes, or a first run without ``--record-opt-outs``, loses no opt-out.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bulksend.appendfile import AppendFile, Key
from bulksend.replies import REPLIES_HEADER, OptOutKeywords, Reply, reply_line, split_reply_line

__all__ = ["Inbox", "replies_path_for"]

_LISTED = re.compile(r'\s*"?(?:\+|00)?([1-9][0-9]{5,14})\b')


def replies_path_for(receipts_path: str | os.PathLike[str]) -> Path:
    """``x.receipts.csv`` -> ``x.replies.csv`` (else ``<stem>.replies.csv``), beside it."""
    receipts = Path(receipts_path)
    name = receipts.name
    if name.endswith(".receipts.csv"):
        return receipts.with_name(name[: -len(".receipts.csv")] + ".replies.csv")
    return receipts.with_name(receipts.stem + ".replies.csv")


def _listed_number(line: str) -> int | None:
    m = _LISTED.match(line)
    return int(m.group(1)) if m else None


class Inbox:
    """The replies file and the optional opt-out file of one receiver (see the module docstring)."""

    def __init__(
        self,
        replies_path: Path,
        opt_out_path: Path | None,
        keywords: OptOutKeywords,
        on_error: Callable[[OSError, str, Path], None],
    ) -> None:
        self.keywords = keywords
        self._opted_out_on_file: list[str] = []
        self.replies = AppendFile(
            replies_path,
            lambda exc, action: on_error(exc, action, replies_path),
            header=REPLIES_HEADER,
            kind="replies file",
            read_key=self._read_reply,
        )
        self.opt_outs: AppendFile | None = None
        if opt_out_path is not None:
            self.opt_outs = AppendFile(
                opt_out_path,
                lambda exc, action: on_error(exc, action, opt_out_path),
                header=None,
                kind="opt-out list",
                read_key=_listed_number,
            )

    def _read_reply(self, line: str) -> Key | None:
        fields = split_reply_line(line)
        if fields is None:
            return None
        if fields[6] == "1":
            self._opted_out_on_file.append(fields[3])
        return fields[1]

    @property
    def files(self) -> list[AppendFile]:
        return [self.replies] if self.opt_outs is None else [self.replies, self.opt_outs]

    async def open(self) -> tuple[int, int]:
        """Open both files; the replies on file and the opt-outs added to catch up with them."""
        on_file = self.replies.open()
        added = 0
        if self.opt_outs is not None:
            try:
                self.opt_outs.open()
            except BaseException:
                self.replies.close()
                raise
            missing = dict.fromkeys(
                n for n in self._opted_out_on_file if int(n) not in self.opt_outs.keys
            )
            for number in missing:
                self.opt_outs.submit(f"+{number}\n", int(number))
            await self.opt_outs.written()
            added = len(missing)
        self._opted_out_on_file = []
        return on_file, added

    def close(self) -> None:
        try:
            if self.opt_outs is not None:
                self.opt_outs.close()
        finally:
            self.replies.close()

    @property
    def stored(self) -> int:
        """Distinct replies in the file (restored ones included)."""
        return len(self.replies.keys)

    def store(self, reply: Reply) -> tuple[asyncio.Future[None], bool, bool]:
        """Store ``reply`` unless it is a repeat: (written, duplicate, a new opt-out)."""
        key = reply.mo_msg_id
        if key in self.replies.keys:
            return self.replies.written(), True, False  # the first copy may still be buffered
        keyword = self.keywords.opts_out(reply)
        waits: list[asyncio.Future[None]] = []
        new_opt_out = False
        opt_outs = self.opt_outs
        if keyword and opt_outs is not None:
            number = int(reply.sender)
            if number not in opt_outs.keys:
                new_opt_out = True
                waits.append(opt_outs.submit(f"+{reply.sender}\n", number))
            else:
                waits.append(opt_outs.written())
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        waits.append(self.replies.submit(reply_line(now, reply, keyword), key))
        if len(waits) == 1:
            return waits[0], False, new_opt_out
        return asyncio.ensure_future(_all(waits)), False, new_opt_out


async def _all(futures: list[asyncio.Future[None]]) -> None:
    """Wait for several group commits (each shared by others: shielded); the first failure raises."""
    for future in futures:
        await asyncio.shield(future)
