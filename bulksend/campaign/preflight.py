"""Before the first message: the dry run, the credit pre-flight and the login.

* :func:`dry_run` reads the whole input, counts what would be sent and in how many requests, and,
  with credentials, reads the balance; it writes nothing and sends nothing.
* :class:`CreditCheck` asks whether the credit covers the rows still to send. The pipeline starts
  it in the gateway's connection pool while the reader starts, and the producer waits for its
  answer before the first batch leaves, so it costs no round trip of its own. The cheap bound
  first (every line of the file at the campaign's parts); only when the balance is below it are the
  unsent rows counted exactly. Short: the run stops with nothing sent, or, with
  ``--allow-partial``, :attr:`CreditCheck.limit` caps what the producer queues.
* :func:`login` opens a session (``--auth session``) before the first batch; a gateway that is
  not reached yet is no refusal (the first batch logs in again, with its retries).

A balance the gateway cannot give (not reached, garbled) is a warning, never a stop; its own
refusal (authentication, a frozen account) stops the run before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bulksend import gsm
from bulksend.account import Account, OneAccount
from bulksend.campaign.control import EXIT_FATAL, RunControl
from bulksend.campaign.plan import Plan
from bulksend.campaign.summary import CampaignSummary, count_input, count_window
from bulksend.client import Gateway
from bulksend.errors import ErrorClass, GatewayError, ProtocolError, redact
from bulksend.journal import RowBitmap
from bulksend.reader import InlineReader, ProcessReader

__all__ = ["CreditCheck", "count_lines", "dry_run", "login"]

log = logging.getLogger("bulksend.campaign")


async def dry_run(
    plan: Plan, reader: InlineReader | ProcessReader, summary: CampaignSummary
) -> None:
    """Read the input to its end and count what a real run would send; nothing is written. With a
    send window, the rows outside it now are counted by the time their window opens."""
    quiet = plan.quiet
    if quiet is None:
        async for _block in reader.blocks():
            pass
    else:
        quiet.start_pass()
        async for block in reader.blocks():
            quiet.block_sendable(block, reader.stats)
    count_input(summary, reader.stats)
    count_window(summary, quiet)
    summary.protocol = plan.protocol_name()
    size = plan.per_request()
    summary.batches = -(-summary.valid // size) if summary.valid else 0
    summary.pending = summary.valid - summary.deferred - summary.window_rejected
    s = plan.settings
    if (s.api_key if s.api == "one" else s.password) and s.check_balance:
        # With credentials, the dry run also says whether the credit would last.
        try:
            async with plan.account() as account:
                summary.balance_before = await account.balance()
        except (GatewayError, ProtocolError) as exc:
            log.warning("could not read the balance: %s", redact(str(exc)))


class CreditCheck:
    """The credit pre-flight of one run: :meth:`start` it, await :attr:`task` before the first
    batch, then read :attr:`limit`; :meth:`close` at the end of the run."""

    def __init__(self, plan: Plan, control: RunControl, summary: CampaignSummary) -> None:
        self.plan = plan
        self.control = control
        self.summary = summary
        self.task: asyncio.Task[None] | None = None
        self.limit: int | None = None  # messages the credit covers (--allow-partial)

    def start(self, account: Account | OneAccount, done: RowBitmap) -> None:
        self.task = asyncio.create_task(self._check(account, done), name="preflight")

    async def close(self) -> None:
        if self.task is not None:
            if not self.task.done():
                self.task.cancel()  # the file held nothing to send
            await asyncio.gather(self.task, return_exceptions=True)

    async def _check(self, account: Account | OneAccount, done: RowBitmap) -> None:
        """Before the first message: does the credit cover the rows still to send?

        The cheap bound first (every line of the file, at this campaign's parts, or at
        ``--max-parts`` when each row has its own text); only when the balance is below it are the
        rows counted exactly (valid, not excluded, not handled; a personalised row at its own
        parts)."""
        plan = self.plan
        s = plan.settings
        parts = plan.shape.parts if plan.message_template is None else s.max_parts
        try:
            balance = await account.balance()
        except GatewayError as exc:
            if exc.fatal and exc.code:  # the gateway's own ERR (authentication, frozen, ...)
                self.control.stop(f"cannot read the balance: {exc}", EXIT_FATAL)
            else:
                log.warning("could not read the balance (%s); sending without the pre-flight", exc)
            return
        except ProtocolError as exc:
            log.warning("could not read the balance (%s); sending without the pre-flight", exc)
            return
        self.summary.balance_before = balance
        upper = max(0, await asyncio.to_thread(count_lines, s.input_path) - len(done))
        if balance >= upper * parts:
            return
        rows, need, covered = await self._count_unsent(done, balance)
        self.summary.credits_needed = need
        if balance >= need:
            return
        per_row = f"{parts} part(s)" if plan.message_template is None else "their parts (per row)"
        if not s.allow_partial:
            self.control.stop(
                f"the credit ({balance:,.2f}) does not cover this campaign: {rows:,} messages x "
                f"{per_row} = {need:,} credits; nothing was sent. Top up, or pass "
                f"--allow-partial to send the first {covered:,} (the rest stays pending)",
                EXIT_FATAL,
            )
            return
        self.limit = covered
        self.summary.credit_limit = covered
        log.warning(
            "the credit (%s) covers %d of %d messages: sending those (--allow-partial); the "
            "rest stays pending for a resume after a top-up",
            f"{balance:,.2f}",
            covered,
            rows,
        )

    async def _count_unsent(self, done: RowBitmap, balance: float) -> tuple[int, int, int]:
        """``(rows, credits, covered)`` still to send: the rows, the credits they need, and how
        many of them (in file order) ``balance`` covers."""
        plan = self.plan
        reader = plan.reader()
        count = credits = covered = 0
        unicode = plan.settings.unicode
        try:
            async for block in reader.blocks():
                if block.contents is None:
                    count += (
                        len(block.rows)
                        if not len(done)
                        else sum(1 for row in block.rows if row not in done)
                    )
                    continue
                for row, text in zip(block.rows, block.contents, strict=True):
                    if row in done:
                        continue
                    count += 1
                    credits += gsm.analyse(text, unicode).parts
                    if credits <= balance:
                        covered += 1
        finally:
            reader.close()
        if plan.message_template is None:
            credits = count * plan.shape.parts
            covered = min(count, int(balance // plan.shape.parts))
        return count, credits, covered


async def login(gateway: Gateway, plan: Plan, control: RunControl) -> None:
    """Open the session of ``--auth session`` before the first batch."""
    if plan.settings.auth != "session":
        return
    try:
        await gateway.login()
    except GatewayError as exc:
        if exc.error_class is ErrorClass.TRANSIENT:
            # Not refused, not reached: the first batch logs in again, with its retries.
            log.warning("cannot log in yet (%s); retrying with the first batch", exc)
            return
        control.stop(f"cannot log in: {exc}", EXIT_FATAL)


def count_lines(path: Path | str) -> int:
    """Lines in the file (LF, or CR for old Mac files): an upper bound of its rows."""
    lf = cr = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lf += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            last = chunk[-1:]
    return max(lf, cr) + (1 if last not in (b"", b"\n", b"\r") else 0)
