"""From the settings to what is sent: the message, its options, its identity, the protocol.

A :class:`Plan` is built once from :class:`~bulksend.config.CampaignSettings` and handed down to
every later room; none of them reads the settings for anything the plan decides. It owns:

* the message's **shape** (:func:`bulksend.gsm.analyse`: encoding and parts), or the ``#field#``
  **template** of a personalised campaign (each row its own text, checked per row by the source);
  a single text longer than ``--max-parts`` is refused here, before anything is read or written;
* the **options** (:class:`~bulksend.wire.legacy.MessageOptions`) and the ones that were set
  (:meth:`Plan.message_options`), which join the campaign's **fingerprint** (its identity in the
  journal: another text or option on the same results file is another campaign);
* the **protocol** (:meth:`Plan.make_wire`): the One API, the legacy batch interface for a
  personalised text, or ``sendmsg``; and how many recipients one request carries
  (:meth:`Plan.per_request`);
* how the input is **read** (:meth:`Plan.reader`: column, number policy, dedupe, the rendering of
  a personalised text, the ``--exclude`` lists once :meth:`Plan.load_opt_outs` loaded them), and
  the gateway's client settings and balance calls.

Everything here is pure (it builds objects, reads no file and opens no connection) except
:meth:`Plan.load_opt_outs`, which reads the ``--exclude`` lists off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from bulksend import gsm
from bulksend.account import Account, OneAccount
from bulksend.campaign.summary import CampaignSummary
from bulksend.client import ClientSettings, RetryPolicy
from bulksend.config import CampaignSettings
from bulksend.errors import InputError, ProtocolError
from bulksend.journal import campaign_fingerprint
from bulksend.numbers import NumberPolicy
from bulksend.optout import OptOuts, load_opt_outs
from bulksend.quiet import QuietHours
from bulksend.reader import InlineReader, ProcessReader, make_reader
from bulksend.source import RecipientSource
from bulksend.template import Template
from bulksend.wire import WireProtocol
from bulksend.wire.legacy import Auth, MessageOptions, SendmsgTemplate, SendmsgWire

__all__ = ["Plan"]

log = logging.getLogger("bulksend.campaign")


class Plan:
    """What one campaign sends, and how: built from its settings, before anything is read."""

    def __init__(self, settings: CampaignSettings) -> None:
        self.settings = settings
        udh = data = None
        if settings.data is not None:
            udh_octets = gsm.parse_hex(settings.udh or "", "--udh")
            data_octets = gsm.parse_hex(settings.data, "--data")
            self.shape = gsm.analyse_binary(udh_octets, data_octets)
            udh, data = udh_octets.hex().upper() or None, data_octets.hex().upper()
        else:
            self.shape = gsm.analyse(settings.text, settings.unicode)
        parsed = Template.parse(settings.text) if data is None else None
        self.message_template: Template | None = (
            parsed if parsed is not None and parsed.personalised else None
        )
        """The ``#field#`` template of a personalised campaign (each row its own text), else None."""
        if self.message_template is None and self.shape.parts > settings.max_parts:
            raise InputError(
                f"the text needs {self.shape.parts} parts ({self.shape.units} "
                f"{'septets' if self.shape.encoding is gsm.Encoding.GSM7 else 'UCS-2 units'}), "
                f"more than --max-parts {settings.max_parts}"
            )
        self.options = MessageOptions(
            text="" if data is not None else gsm.wire_text(settings.text, self.shape.encoding),
            sender=settings.sender,
            mo=settings.mo,
            callback=settings.callback,
            unicode=self.shape.encoding is gsm.Encoding.UCS2,
            concat=self.shape.parts,
            max_credits=settings.max_credits,
            deliv_time=settings.deliver_in,
            validity=settings.validity,
            msg_type="SMS_FLASH" if settings.flash else None,
            udh=udh,
            data=data,
        )
        self.template = SendmsgTemplate(self.options)
        self.policy = NumberPolicy(default_country=settings.default_country, strict=settings.strict)
        self.opt_outs: OptOuts | None = None
        """The ``--exclude`` lists, once :meth:`load_opt_outs` read them."""
        self.quiet = QuietHours.of(settings)
        """The send window (``--send-window``) and what it deferred; None without one."""

    def new_summary(self) -> CampaignSummary:
        """The run's summary as far as the plan knows it: the files, the message, its options."""
        s = self.settings
        return CampaignSummary(
            input_path=str(s.input_path),
            results_path=str(s.results_path),
            rejects_path=str(s.rejects_path),
            dry_run=s.dry_run,
            encoding=self.shape.encoding.value if self.message_template is None else "per row",
            parts=self.shape.parts if self.message_template is None else 0,
            personalised=self.message_template is not None,
            options=self.message_options(),
            window="" if self.quiet is None else str(self.quiet.gate.window),
            default_timezone="" if self.quiet is None else self.settings.default_timezone,
        )

    # -- the message -------------------------------------------------------------------------------

    def rendering(self) -> dict[str, Any]:
        """The reader's arguments that render a personalised campaign's rows (none otherwise)."""
        if self.message_template is None:
            return {}
        s = self.settings
        return {"template": self.message_template, "max_parts": s.max_parts, "unicode": s.unicode}

    def message_options(self) -> dict[str, object]:
        """The message options that were set (flash, binary, scheduling, validity, credits)."""
        o = self.options
        chosen: dict[str, object] = {
            "flash": o.msg_type == "SMS_FLASH",
            "udh": o.udh,
            "data": o.data,
            "deliver_in": o.deliv_time,
            "validity": o.validity,
            "max_credits": o.max_credits,
        }
        return {k: v for k, v in chosen.items() if v not in (None, False)}

    def fingerprint(self) -> str:
        s = self.settings
        # Options join the identity only when set, so campaigns without them keep the
        # fingerprint earlier versions wrote (their journals still resume).
        return campaign_fingerprint(
            text=s.text,
            sender=s.sender,
            mo=s.mo,
            callback=s.callback,
            encoding=self.shape.encoding.value,
            **self.message_options(),
        )

    # -- the input ---------------------------------------------------------------------------------

    def reading(self) -> dict[str, object]:
        """What decides which rows the input holds, for the journal's input identity (``bulksend
        status`` reads them back)."""
        s = self.settings
        reading: dict[str, object] = {
            "column": s.column,
            "default_country": s.default_country,
            "strict": s.strict,
            "dedupe": s.dedupe,
        }
        if self.message_template is not None:
            # Which rows a personalised campaign sends also depends on these (a row whose
            # rendering is refused is a reject).
            reading.update(template=s.text, max_parts=s.max_parts, unicode=s.unicode)
        return reading

    async def load_opt_outs(self, summary: CampaignSummary) -> None:
        """Read the ``--exclude`` lists (off the event loop); later readers refuse their numbers."""
        s = self.settings
        loading = time.monotonic()
        self.opt_outs = await asyncio.to_thread(load_opt_outs, s.exclude, self.policy)
        summary.opt_out_lists = len(self.opt_outs)
        summary.opt_out_load_seconds = round(time.monotonic() - loading, 3)
        for path, count in self.opt_outs.skipped.items():
            log.warning("opt-out list %s: %d rows are not numbers and exclude nothing", path, count)

    def source(self) -> RecipientSource:
        """The input read in this process (the dry run; the counters before sending starts)."""
        s = self.settings
        return RecipientSource(
            s.input_path,
            column=s.column,
            policy=self.policy,
            dedupe=s.dedupe,
            opt_outs=self.opt_outs,
            **self.rendering(),
        )

    def reader(
        self, *, opt_outs: bool = True, keep_fields: bool = True
    ) -> InlineReader | ProcessReader:
        """A reader of the input (``--reader``: in this process or a child); ``opt_outs`` False
        reads it without the ``--exclude`` lists, ``keep_fields`` False without field values."""
        s = self.settings
        return make_reader(
            s.input_path,
            column=s.column,
            policy=self.policy,
            dedupe=s.dedupe,
            mode=s.reader,
            opt_outs=self.opt_outs if opt_outs else None,
            keep_fields=keep_fields,
            **self.rendering(),
        )

    # -- the protocol ------------------------------------------------------------------------------

    def protocol_name(self) -> str:
        """``one``, ``batch`` (the legacy batch interface) or ``sendmsg``: see :meth:`make_wire`."""
        if self.settings.api == "one":
            return "one"
        return "batch" if self.message_template is not None else "sendmsg"

    def per_request(self) -> int:
        """Recipients one request carries (the batch interface: one ``senditem`` per row)."""
        return 1 if self.protocol_name() == "batch" else self.settings.effective_batch_size

    def checked_wire(self) -> WireProtocol:
        """:meth:`make_wire`, its refusal (a field the protocol cannot carry, the One API key's
        form) an :class:`~bulksend.errors.InputError` naming the protocol."""
        try:
            return self.make_wire()
        except ProtocolError as exc:
            where = {
                "batch": "the legacy API's batch interface",
                "one": "the One API",
                "sendmsg": "the legacy API",
            }[self.protocol_name()]
            raise InputError(f"the message cannot be sent through {where}: {exc}") from None

    def make_wire(self) -> WireProtocol:
        """The wire protocol this campaign speaks (see :mod:`bulksend.wire`): the One API with
        ``--api one`` (each message its own content); else the legacy API, through its batch
        interface for a personalised text (``startbatch`` once, ``senditem`` per row) and
        ``sendmsg`` for one text."""
        s = self.settings
        auth = Auth(api_id=s.api_id, user=s.user, password=s.password)
        if s.api == "legacy" and self.message_template is not None:
            from bulksend.wire.batch import BatchInterfaceWire

            return BatchInterfaceWire(
                s.text,
                self.message_template.fields,
                auth,
                options=self.options,  # its text, unicode and concat are the batch's own
                unicode=s.unicode,
                max_parts=s.max_parts,
                use_session=s.auth == "session",
            )
        if s.api == "one":
            from bulksend.wire.one import ApiKey, OneApi, OneOptions, OneWire

            o = self.options
            options = OneOptions(
                sender=s.sender,
                validity_period=s.validity,
                binary=o.data is not None,
                udh=o.udh,
            )
            return OneWire(OneApi(ApiKey(s.api_key), options), o.data or s.text)
        return SendmsgWire(
            self.template,
            auth,
            use_session=s.auth == "session",
            method=s.method,
        )

    # -- the gateway -------------------------------------------------------------------------------

    def account(self, session: aiohttp.ClientSession | None = None) -> Account | OneAccount:
        """The balance calls of this campaign's API (``session``: the gateway's pool to share)."""
        s = self.settings
        if s.api == "one":
            from bulksend.wire.one import ApiKey

            return OneAccount(self.client_settings(), ApiKey(s.api_key), session)
        return Account(self.client_settings(), session)

    def client_settings(self) -> ClientSettings:
        s = self.settings
        return ClientSettings(
            endpoint=s.endpoint,
            auth=Auth(api_id=s.api_id, user=s.user, password=s.password),
            use_session=s.auth == "session",
            method=s.method,
            concurrency=s.concurrency,
            rate=s.rate,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            verify_tls=not s.insecure,
            retry=RetryPolicy(max_attempts=s.retry_attempts, max_total_seconds=s.retry_max_seconds),
        )
