"""The batch interface, ``/http_batch/``: ``startbatch``, ``senditem``, ``quicksend``, ``endbatch``.

:class:`BatchCalls` answers the four commands over the simulator's live batches
(:class:`~bulksend.simulator.batches.Batches`; a batch's template and options, and how an item
fills it, are :mod:`bulksend.simulator.batches`'s rules). ``senditem`` goes through the same
per-recipient refusals, throttle, credit and ledger as a one-number ``sendmsg``; ``quicksend`` is
``sendmsg`` with the batch's template as its text (:meth:`SendmsgCalls._send` itself). The exact
answers are in :mod:`bulksend.simulator.app`'s docstring ("The batch interface").

What it promises: the same authentication and codes as ``/http/``; an unknown, ended or expired
``batch_id`` is ``ERR: 201`` for every command that names one; a batch counts the items it sent
(per-recipient refusals included, whole-request refusals not).
"""

from __future__ import annotations

import time

from aiohttp import web

from bulksend.simulator.account import Answer, Params
from bulksend.simulator.batches import Batches, BatchTemplate, parse_startbatch
from bulksend.simulator.codes import err
from bulksend.simulator.sendmsg import SendmsgCalls, _refusals, _SendRequest, _split_numbers

__all__ = ["BatchCalls"]

_NO_CREDIT = err(301)


class BatchCalls(SendmsgCalls):
    """The ``/http_batch/`` commands (see the module docstring)."""

    batches: Batches

    def expire_batches(self) -> None:
        """Forget every batch: the next use of any batch id answers ``ERR: 201``."""
        self.batches.expire_all()

    # -- the commands ------------------------------------------------------------------------------

    def _authorised_batch(self, params: Params) -> BatchTemplate | Answer:
        """The batch ``params`` name, once the request authenticates; else the refusal (counted:
        an unknown or expired batch is ERR 201)."""
        refusal = self._authenticate(params)
        if refusal is None:
            batch = self._batch(params)
            if batch is not None:
                return batch
            refusal = err(201)
        self.stats.refused += 1
        return refusal

    def _batch(self, params: Params) -> BatchTemplate | None:
        faults = self.faults
        return self.batches.get(params.get("batch_id"), faults.batch_ttl, faults.batch_expire_every)

    def _startbatch(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        batch = parse_startbatch(params, time.time())
        if isinstance(batch, int):
            return err(batch)
        self.batches.add(batch, self.faults.batch_ttl)
        return "ID: " + batch.batch_id

    def _senditem(self, params: Params, is_post: bool) -> Answer:
        stats = self.stats
        batch = self._authorised_batch(params)
        if not isinstance(batch, BatchTemplate):
            return batch
        to = params.get("to", "").strip()
        if not to or "," in to:
            stats.refused += 1
            return err(101)
        rendered = batch.render(params)
        if isinstance(rendered, int):
            stats.refused += 1
            return err(rendered)
        faults = self.faults
        codes = _refusals([to], to, faults)
        wait = faults.admit(1 if codes is None else 0)
        if wait > 0.0:
            return web.Response(
                status=429, text="429: Too Many Requests", headers=faults.retry_after(wait)
            )
        if codes is not None:
            batch.items += 1
            stats.recipients += 1
            stats.rejected += 1
            return err(codes[0])
        if not faults.charge(rendered.parts):
            stats.refused += 1
            return err(301)
        batch.items += 1
        stats.recipients += 1
        stats.accepted += 1
        delay = batch.delay_minutes(time.time()) * self.minute_seconds
        ids = self.ledger.accept(
            [to],
            rendered.text,
            climsgid=batch.climsgid,
            parts=rendered.parts,
            sender=batch.sender or (self.two_way_number if batch.mo else ""),
            callback=batch.callback,
            joined=to,
            options=batch.options,
            due=time.monotonic() + delay if delay > 0.0 else 0.0,
        )
        return "ID: " + ids[0]

    def _quicksend(self, params: Params, is_post: bool) -> Answer:
        stats = self.stats
        batch = self._authorised_batch(params)
        if not isinstance(batch, BatchTemplate):
            return batch
        if len(batch.pieces) > 1:
            stats.refused += 1
            return err(202)  # placeholders: this batch has no template that can go out as is
        to = _split_numbers(params, is_post)
        if isinstance(to, int):
            stats.refused += 1
            return err(to)
        rendered = batch.render(params)
        if isinstance(rendered, int):
            stats.refused += 1
            return err(rendered)
        numbers, joined = to
        answer = self._send(
            _SendRequest(
                numbers,
                joined,
                rendered.text,
                rendered.parts,
                batch.climsgid,
                batch.sender,
                batch.callback,
                batch.mo,
                batch.delay_minutes(time.time()),
                batch.options,
            )
        )
        if isinstance(answer, str) and not answer.startswith(_NO_CREDIT):
            batch.items += 1
        return answer

    def _endbatch(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        batch = self._batch(params)
        if batch is None:
            return err(201)
        self.batches.end(batch.batch_id)
        return "OK"
