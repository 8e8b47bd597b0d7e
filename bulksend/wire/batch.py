"""The legacy batch interface (``/http_batch/``) as a :class:`~bulksend.wire.WireProtocol`. No I/O.

A personalised campaign registers its template once (``startbatch`` → ``ID: <batch_id>``) and
then sends one ``senditem`` per recipient: ``batch_id``, one ``to`` and the row's field values;
the gateway renders the template and answers ``ID: <apimsgid>``. At the end ``endbatch`` closes
each batch (:meth:`BatchInterfaceWire.finish`).

What this module promises:

* **Fields are positional on the wire.** Clickatell fills only ``#field1#`` … ``#fieldN#`` from
  the ``senditem`` parameters ``field1`` … ``fieldN``; any other ``#name#`` would go out as it is
  written. The user names placeholders after the file's columns (``Hi #first_name#``), so the
  wire maps names to positions (:func:`positional_template`): the K-th distinct placeholder, in
  order of first appearance, becomes ``#fieldK#`` in the ``startbatch`` template, and each
  ``senditem`` carries its value as ``fieldK``. A column that happens to be called ``field2`` is
  a name like any other (it may well be ``field1`` on the wire). The UCS-2 batch carries the same
  positional template, as hex.
* **One recipient per request** (``max_batch = 1``); the pipeline runs them at full concurrency.
* **Two batches, one per encoding.** The legacy API fixes ``unicode`` per batch, but rows differ (a
  name in Chinese needs UCS-2, the others fit GSM-7). A row's encoding is
  :func:`bulksend.gsm.choose_encoding` of its rendered content (``Batch.contents[0]``, or the
  template rendered here when the batch carries no contents) under the campaign's ``unicode`` mode;
  it goes through the batch of that encoding, started lazily by :meth:`~BatchInterfaceWire.prepare`
  the first time a row needs it.
* **The UCS-2 convention** (the public notes are silent; bulksend and its simulator agree): a
  batch started with ``unicode=1`` carries its ``template`` as UTF-16BE hex, exactly like
  ``sendmsg``'s ``text`` (:func:`bulksend.gsm.encode_ucs2_hex`, placeholders included: ``#name#``
  is hex too, the gateway decodes the template before it looks for ``#fieldN#``), and every
  ``senditem`` into that batch carries each field **value** as UTF-16BE hex as well (an empty value
  is the empty string). Parameter names (``field1``, ``to``, ``batch_id``) stay plain ASCII. A
  GSM-7 batch carries template and values as plain text.
* **Placeholders** are letters, digits and underscores between ``#`` signs
  (:data:`PLACEHOLDER`, one left-to-right pass, a value is never expanded again:
  :func:`render_template`). Every placeholder of the template must be one of the campaign's
  fields (:class:`~bulksend.errors.ProtocolError` at construction otherwise); fields the
  template does not use are not sent. Field names never travel, so any name the template
  language allows will do (``#to#``, ``#Name#`` beside ``#name#``).
* **Session state**: the legacy session id (:class:`~bulksend.wire.legacy.LegacySession`, with
  ``use_session``) and the batch ids. ``ERR: 003`` (session expired) on a ``senditem`` is a
  ``SESSION`` refusal and :meth:`~BatchInterfaceWire.invalidate` drops the session id **and** both
  batch ids (a batch is renewed when it expires or the session changes; ``finish`` still ends
  those, the gateway may hold them); ``ERR: 201`` / ``ERR: 202`` (batch id invalid, expired or
  without template) are ``SESSION`` refusals that drop the batch id the request used (named in
  the error's description, ``(batch <id>)``; both batch ids for an error that names none).
  The stale state a refused request used is dropped as its answer is parsed, if it is still
  current (a batch or a session started since is kept), so that a sender that prepared before
  the renewal does not resend with it. Nothing was processed either way: the client renews and resends at once. A
  ``senditem`` built after its batch id was dropped (a concurrent sender found out first) carries
  the last id it had, so the gateway answers ``ERR: 201`` and the renewal happens in order.
  ``ERR: 003`` on a ``startbatch`` drops the session id and the steps go on (log in again, then
  start the batch); any other refused step is a :class:`~bulksend.errors.GatewayError` with its
  class.
* **Answers** (:meth:`~BatchInterfaceWire.parse`): ``ID: <apimsgid>``, optionally followed by
  ``To: <n>`` which must then be the number asked for (else ``UNKNOWN``), is ``ACCEPTED``; an
  ``ERR:`` of the recipient class is ``REJECTED`` with that class; any other ``ERR:`` refuses the
  request with :func:`~bulksend.wire.legacy.classify`'s class (``901`` transient, retried); a
  non-200 status is read by :func:`~bulksend.wire.legacy.http_answer`; anything else (empty, HTML,
  several lines, a ``To:`` naming another number) is ``UNKNOWN``: maybe sent, never accepted.
* What the gateway would refuse for the whole campaign is the campaign's to prevent, as with
  ``sendmsg``: an empty field value (``ERR: 101``) or a row longer than ``max_parts`` (``ERR:
  113``) stops the campaign, so rows are checked before they are sent.

Batch ids are not secrets; the credentials and the session id never appear in an exception or a
``repr`` (:class:`~bulksend.wire.legacy.Auth`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bulksend.errors import ErrorClass, GatewayError, InputError, ProtocolError
from bulksend.gsm import Encoding, choose_encoding, encode_ucs2_hex
from bulksend.wire import Answer, Batch, Outcome, Request, RequestError, Step, Verdict
from bulksend.wire.legacy import (
    Auth,
    LegacySession,
    MessageOptions,
    classify,
    form_request,
    http_answer,
)

__all__ = [
    "ENDBATCH_PATH",
    "PLACEHOLDER",
    "QUICKSEND_PATH",
    "SENDITEM_PATH",
    "STARTBATCH_PATH",
    "BatchInterfaceWire",
    "parse_batch_id",
    "placeholders",
    "positional_template",
    "render_template",
]

STARTBATCH_PATH = "/http_batch/startbatch"
SENDITEM_PATH = "/http_batch/senditem"
QUICKSEND_PATH = "/http_batch/quicksend"
ENDBATCH_PATH = "/http_batch/endbatch"

PLACEHOLDER = re.compile(r"#([A-Za-z0-9_]+)#")
"""A template field: letters, digits and underscores between ``#`` signs."""


BATCH_SESSION_CODES = frozenset({3, 201, 202})
_TAGGED = re.compile(r"\(batch ([0-9A-Za-z]{1,64})\)$")
_SENT_LIMIT = 1 << 16
"""``senditem`` codes that mean stale session state: renew it and resend (nothing processed)."""

_ID = re.compile(r"ID:\s*([0-9A-Za-z]{1,64})(?:\s+To:\s*\+?(\d{1,20}))?", re.IGNORECASE)
_ERR = re.compile(r"ERR:\s*(\d{1,3})\s*(?:,\s*(.*?))?(?:\s+To:\s*\+?(\d{1,20}))?", re.IGNORECASE)


def placeholders(template: str) -> list[str]:
    """The placeholder names of ``template`` in order of first appearance."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(template)))


def positional_template(template: str) -> tuple[str, tuple[str, ...]]:
    """``template`` as the gateway reads it, and the names in wire order: the K-th distinct
    placeholder (in order of first appearance) becomes ``#fieldK#``. The text around the
    placeholders is kept as written, so the gateway's left-to-right scan finds the same
    placeholders at the same places."""
    names = placeholders(template)
    position = {name: f"#field{k}#" for k, name in enumerate(names, 1)}
    return PLACEHOLDER.sub(lambda m: position[m.group(1)], template), tuple(names)


def render_template(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``#name#`` replaced by ``values[name]`` (one pass: a value is never
    expanded again); KeyError for a placeholder without a value."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _lines(body: bytes) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_batch_id(status: int, body: bytes) -> str:
    """The batch id of a ``startbatch`` answer (``ID: <batch_id>``; spaces, letter case, CRLF and
    trailing blank lines allowed). :class:`GatewayError` for an ``ERR:`` (``201``/``202``, which
    here mean a malformed template, are of the request class) or a non-200 status;
    :class:`ProtocolError` for anything else."""
    if status != 200:
        error_class = ErrorClass.TRANSIENT if status in (429, 502, 503, 504) else ErrorClass.FATAL
        raise GatewayError(0, f"HTTP {status} from {STARTBATCH_PATH}", error_class)
    lines = _lines(body)
    if len(lines) != 1:
        raise ProtocolError(
            f"startbatch answered {len(lines)} lines, expected one", lines[1] if lines else None
        )
    line = lines[0]
    m = _ERR.fullmatch(line)
    if m is not None:
        code = int(m.group(1))
        error_class = ErrorClass.REQUEST if code in (201, 202) else classify(code)
        raise GatewayError(code, m.group(2) or "", error_class)
    m = _ID.fullmatch(line)
    if m is None or m.group(2) is not None:
        raise ProtocolError("startbatch answer is not 'ID: <batch id>'", line)
    return m.group(1)


class BatchInterfaceWire:
    """``/http_batch/`` behind :class:`~bulksend.wire.WireProtocol` for a personalised campaign
    (the promises are in the module docstring).

    ``template``: the text with ``#name#`` placeholders (``#fieldK#`` on the wire). ``fields``:
    the field names in the order of each ``Batch.fields`` tuple. ``options``: the per-message
    options (``sender``, ``mo``, ``callback``, ``msg_type``, ``validity``, ``deliv_time``,
    ``scheduled_time``, ``max_credits``, ``escalate``, ``queue``, ``extra``) sent once at
    ``startbatch``; its ``text``,
    ``unicode`` and ``concat`` are ignored (the template, the encoding and ``max_parts`` decide
    them) and a ``climsgid`` or a binary body is refused. ``unicode``: ``auto`` (per row), ``on``
    (every row UCS-2) or ``off`` (every row GSM-7; a row that is not is a ProtocolError).
    ``max_parts``: ``concat`` of both batches. ``auth`` / ``use_session`` as for ``sendmsg``.
    """

    name = "batch"
    max_batch = 1

    def __init__(
        self,
        template: str,
        fields: Sequence[str],
        auth: Auth,
        *,
        options: MessageOptions | None = None,
        unicode: str = "auto",
        max_parts: int = 1,
        use_session: bool = False,
    ) -> None:
        if not template:
            raise ProtocolError("the batch template is empty")
        if unicode not in ("auto", "on", "off"):
            raise ProtocolError(f"unicode must be auto, on or off, not {unicode!r}")
        options = options if options is not None else MessageOptions("")
        if options.climsgid is not None or options.data is not None or options.udh is not None:
            raise ProtocolError("a batch carries no climsgid and no binary body")
        self.fields = tuple(fields)
        for name in self.fields:
            if PLACEHOLDER.fullmatch(f"#{name}#") is None:
                raise ProtocolError(f"a field name is letters, digits and _: {name!r}")
        wire_template, used = positional_template(template)
        missing = [name for name in used if name not in self.fields]
        if missing:
            raise ProtocolError(f"the template's field(s) {', '.join(missing)} have no values")
        base = replace(options, text=wire_template, unicode=False, concat=max_parts)
        base.validate()
        self.template = template
        self.wire_template = wire_template
        """The template ``startbatch`` carries: ``#fieldK#`` for the K-th placeholder."""
        self.unicode = unicode
        self.max_parts = max_parts
        self.session = LegacySession(auth, use_session)
        # (wire name, index into the row's values), in wire order.
        self._used = tuple((f"field{k}", self.fields.index(name)) for k, name in enumerate(used, 1))
        self._options = {
            Encoding.GSM7: [("template" if k == "text" else k, v) for k, v in base.params()],
        }
        try:
            ucs2 = replace(base, text=encode_ucs2_hex(wire_template), unicode=True)
        except InputError as exc:
            raise ProtocolError(str(exc)) from None
        self._options[Encoding.UCS2] = [
            ("template" if k == "text" else k, v) for k, v in ucs2.params()
        ]
        self._ids: dict[Encoding, str] = {}
        self._last: dict[Encoding, str] = {}
        self._orphans: list[str] = []  # dropped with a session: maybe still live at the gateway
        self._sent: dict[int, tuple[str, Auth]] = {}  # id(batch) -> batch id and auth it used
        self._steps: dict[Encoding, tuple[Auth, Step]] = {}

    def __repr__(self) -> str:
        live = ", ".join(f"{enc.value}={bid}" for enc, bid in self._ids.items()) or "none"
        return f"BatchInterfaceWire(batches: {live}, {self.session.auth!r})"

    @property
    def batch_ids(self) -> dict[Encoding, str]:
        """The live batch id of each encoding started so far (a copy)."""
        return dict(self._ids)

    # -- rows ----------------------------------------------------------------------------------

    def _values(self, batch: Batch) -> tuple[str, ...]:
        if batch.fields is None:
            raise ProtocolError("a batch-interface request needs the row's field values")
        values = batch.fields[0]
        if len(values) != len(self.fields):
            raise ProtocolError(f"{len(values)} field values for {len(self.fields)} fields")
        return values

    def _content(self, batch: Batch) -> str:
        if batch.contents is not None:
            return batch.contents[0]
        values = self._values(batch)
        return render_template(self.template, dict(zip(self.fields, values, strict=True)))

    def encoding(self, batch: Batch) -> Encoding:
        """The encoding (so the batch) of the batch's one row."""
        try:
            return choose_encoding(self._content(batch), self.unicode)
        except InputError as exc:
            raise ProtocolError(str(exc)) from None

    # -- WireProtocol --------------------------------------------------------------------------

    def prepare(self, batch: Batch | None) -> Step | None:
        step = self.session.step()
        if step is not None or batch is None:
            return step
        encoding = self.encoding(batch)
        if encoding in self._ids:
            return None
        auth = self.session.auth
        cached = self._steps.get(encoding)
        if cached is None or cached[0] is not auth:
            request = form_request(STARTBATCH_PATH, [*auth.params(), *self._options[encoding]])
            cached = (auth, Step("startbatch", request))
            self._steps[encoding] = cached
        return cached[1]

    def prepared(self, step: Step, status: int, headers: Mapping[str, str], body: bytes) -> None:
        if step.name == "auth":
            self.session.take(status, body)
            return
        encoding = next((enc for enc, (_, s) in self._steps.items() if s is step), None)
        if encoding is None:
            raise ProtocolError(f"not a step of this protocol: {step.name}")
        try:
            batch_id = parse_batch_id(status, body)
        except GatewayError as exc:
            if exc.code == 3 and self.session.use_session:
                self._drop(session=True)  # the steps go on: log in, then start the batch
                return
            raise
        del self._steps[encoding]
        self._ids[encoding] = self._last[encoding] = batch_id

    def invalidate(self, error: RequestError) -> None:
        if error.code == 3:
            self._drop(session=True)
        elif error.code in (201, 202):
            tagged = _TAGGED.search(error.description)
            if tagged is not None:
                self._forget(tagged.group(1))
            else:
                self._drop(session=False)

    def _forget(self, batch_id: str) -> None:
        """Drop ``batch_id`` if it is still a live batch (not one started since)."""
        for encoding in [enc for enc, live in self._ids.items() if live == batch_id]:
            del self._ids[encoding]

    def _drop(self, *, session: bool) -> None:
        if session:
            self.session.invalidate()
            self._orphans += self._ids.values()
        self._ids.clear()

    def build(self, batch: Batch) -> Request:
        if len(batch.msisdns) != 1:
            raise ProtocolError(f"a senditem carries one number, not {len(batch.msisdns)}")
        values = self._values(batch)
        encoding = self.encoding(batch)
        batch_id = self._ids.get(encoding) or self._last.get(encoding)
        if batch_id is None:
            raise ProtocolError(f"no {encoding.value} batch started: prepare() first")
        params = [
            *self.session.auth.params(),
            ("batch_id", batch_id),
            ("to", batch.msisdns[0]),
        ]
        if encoding is Encoding.UCS2:
            try:
                params += [(name, encode_ucs2_hex(values[i])) for name, i in self._used]
            except InputError as exc:
                raise ProtocolError(str(exc)) from None
        else:
            params += [(name, values[i]) for name, i in self._used]
        sent = self._sent
        if len(sent) >= _SENT_LIMIT:
            sent.clear()  # only requests that were never answered stay behind
        sent[id(batch)] = (batch_id, self.session.auth)
        return form_request(SENDITEM_PATH, params)

    def parse(self, status: int, headers: Mapping[str, str], body: bytes, batch: Batch) -> Answer:
        sent = self._sent.pop(id(batch), None)
        by_status = http_answer(status, headers, 1, SENDITEM_PATH)
        if by_status is not None:
            return by_status
        msisdn = batch.msisdns[0]
        lines = _lines(body)
        if len(lines) != 1:
            what = "an empty answer" if not lines else f"{len(lines)} lines"
            return Answer.unknown(1, f"unreadable answer to senditem: {what}")
        line = lines[0]
        m = _ID.fullmatch(line)
        if m is not None:
            to = m.group(2)
            if to is not None and to != msisdn:
                return Answer.unknown(1, f"senditem answer names another number: {to}")
            return Answer(api_ids=(m.group(1),), numbers=(msisdn,))
        m = _ERR.fullmatch(line)
        if m is None:
            quoted = line if len(line) <= 120 else line[:120] + "…"
            return Answer.unknown(1, f"unreadable answer to senditem: {quoted!r}")
        code, description, to = int(m.group(1)), m.group(2) or "", m.group(3)
        if to is not None and to != msisdn:
            return Answer.unknown(1, f"senditem answer names another number: {to}")
        if code in BATCH_SESSION_CODES:
            if sent is not None:
                # Drop the stale state the request used at once, if it is still current: the
                # client invalidates once per generation, and a sender that prepared earlier
                # would otherwise resend with it once more.
                batch_id, auth = sent
                if code == 3:
                    if auth is self.session.auth and self.session.use_session:
                        self._drop(session=True)
                else:
                    self._forget(batch_id)
                    description = f"{description} (batch {batch_id})"
            return Answer.refused(1, RequestError(code, description, ErrorClass.SESSION, status))
        error_class = classify(code)
        if error_class is ErrorClass.RECIPIENT:
            return Answer((Outcome(Verdict.REJECTED, "", code, description, error_class),))
        return Answer.refused(1, RequestError(code, description, error_class, status))

    def finish(self) -> list[Request]:
        """One ``endbatch`` per live batch, and per batch dropped only because the session
        expired (the gateway may still hold it); the wire forgets them all. They authenticate
        with the lasting credentials: a session may expire between the last item and the end."""
        auth = self.session.lasting.params()
        requests = [
            form_request(ENDBATCH_PATH, [*auth, ("batch_id", batch_id)])
            for batch_id in dict.fromkeys([*self._orphans, *self._ids.values()])
        ]
        self._ids.clear()
        self._orphans.clear()
        self._last.clear()
        self._steps.clear()
        return requests
