"""Delivery receipts: the HTTP receiver for the gateway's status callbacks, and its CSV file.

:class:`ReceiptServer` owns one aiohttp server and one append-only receipts file (header
:data:`RECEIPTS_HEADER`, mode 0600). It accepts the callback of ``clickatell-http-api.md``
("Callbacks") as GET or POST form at ``/`` (or only at ``/<token>`` when a token is set; any other
path is then 403), reads the parameter names case-insensitively and validates them: ``apiMsgId``
1-64 ASCII letters/digits, ``status`` three digits, ``timestamp`` an integer, ``charge`` a finite
number, ``to`` digits, ``cliMsgId`` up to 64 letters/digits (the last four may be absent). A bad
callback gets 400 and one log line naming the field, never a crash.

It also accepts the One API's JSON callbacks (a POST with ``Content-Type: application/json``, or
any POST body that starts with ``{``), read by :func:`bulksend.wire.one.parse_callback`: ``messageId``
is stored as ``api_msg_id``, ``statusCode`` as the three-digit ``status``, ``timestamp`` (ms) as
whole unix seconds, ``clientMessageId`` (letters, digits, ``-``, ``_``) as ``cli_msg_id``, and a
``charge`` when the body has one (the documented callback has none; the simulator's does). A
bulksend campaign's One API messages carry their row's key there (:mod:`bulksend.rowkey`), by
which ``--resend-unknown`` joins a receipt to its row (:mod:`bulksend.reconcile`).
Same file, same validation limits, same idempotency key; malformed JSON gets 400 and is not stored.

What an answer means (the durability guarantee):

* **200** means the receipt is in the file as far as the operating system is concerned: its line
  went out in a ``write(2)`` that returned before the answer was sent. A receiver killed at any
  moment, even by SIGKILL, keeps every receipt it acknowledged; the gateway retries the others.
* Power loss or an OS crash can lose at most the receipts written in the last ``fsync_interval``
  seconds (0.5 s by default) plus one ``fsync`` call: the file is fsynced on that timer whenever it
  grew, and at close.
* Writes are group commits: every callback that arrives in one turn of the event loop is buffered
  and written with one ``write(2)``; all of their answers wait for that single write.
* Idempotent: ``(apiMsgId, status)`` is one receipt however often the gateway repeats it (the
  repeat is answered 200 and not written again). The keys live in memory, rebuilt from the file
  when a receiver restarts on it; a torn last line left by a kill is cut off first. A key costs
  about 100 bytes (an int for the usual 32-hex ids, else the string).
* A write that fails (disk full) answers 500 and forgets those keys, so the gateway's retry can
  store them later.

The token is compared in constant time, never logged (aiohttp's access log is off, and the token
is registered with :func:`bulksend.errors.register_secret`), and :attr:`ReceiptServer.url` is the
only place it appears. The server binds to loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import NamedTuple
from urllib.parse import unquote_plus

from aiohttp import web

from bulksend import aio
from bulksend.appendfile import AppendFile
from bulksend.errors import BulkSendError, ConfigError, StorageError, register_secret
from bulksend.inbox import Inbox, replies_path_for
from bulksend.listen import is_loopback, parse_listen, require_credentials
from bulksend.lock import FileLock
from bulksend.replies import (
    OptOutKeywords,
    Reply,
    is_json_reply,
    parse_form_reply,
    parse_json_reply,
)
from bulksend.wire import one

__all__ = [
    "FINAL_STATUSES",
    "RECEIPTS_HEADER",
    "STATUS_TEXT",
    "Receipt",
    "ReceiptServer",
    "ReceiptStats",
    "ReceiptsFile",
    "collect_receipts",
    "is_loopback",
    "message_key",
    "parse_callback",
    "parse_json_callback",
    "parse_listen",
    "receipts_path_for",
    "require_credentials",
    "serve",
]

log = logging.getLogger("bulksend.receipts")

RECEIPTS_HEADER = "received_at,api_msg_id,cli_msg_id,to,status,status_text,charge,timestamp"

STATUS_TEXT: dict[str, str] = {
    "001": "Message unknown",
    "002": "Message queued",
    "003": "Delivered to gateway",
    "004": "Received by recipient",
    "005": "Error with message",
    "006": "User cancelled message delivery",
    "007": "Error delivering message",
    "008": "OK",
    "009": "Routing error",
    "010": "Message expired",
    "011": "Queued for later delivery",
    "012": "Out of credit",
    "014": "Maximum MT limit exceeded",
}
"""The documented message statuses; an undocumented three-digit status is stored as-is."""

FINAL_STATUSES: frozenset[str] = frozenset({"004", "005", "006", "007", "009", "010", "012", "014"})
"""Statuses after which a message changes no more (004 delivered, the rest failed)."""


def message_key(api_msg_id: str) -> int | str:
    """An apiMsgId as a set or dict key: a 32-hex id as its integer (a third of the memory of the
    text when millions are held), any other id as it is."""
    if len(api_msg_id) == 32:
        try:
            return int(api_msg_id, 16)
        except ValueError:
            pass
    return api_msg_id


def receipts_path_for(results_path: str | os.PathLike[str]) -> Path:
    """``x.results.csv`` -> ``x.receipts.csv`` (else ``<stem>.receipts.csv``), beside it."""
    results = Path(results_path)
    name = results.name
    if name.endswith(".results.csv"):
        return results.with_name(name[: -len(".results.csv")] + ".receipts.csv")
    return results.with_name(results.stem + ".receipts.csv")


class Receipt(NamedTuple):
    """One validated callback; charge and timestamp as canonical text, empty when absent."""

    api_msg_id: str
    cli_msg_id: str
    to: str
    status: str
    charge: str
    timestamp: str


def _alnum(value: str, limit: int) -> bool:
    return len(value) <= limit and value.isascii() and value.isalnum()


def parse_callback(params: Mapping[str, str]) -> Receipt | str:
    """The receipt a callback's parameters (names already lowercased) describe, or the reason
    it is refused."""
    api_msg_id = params.get("apimsgid", "")
    if not api_msg_id or not _alnum(api_msg_id, 64):
        return "apiMsgId must be 1-64 letters or digits"
    status = params.get("status", "")
    if len(status) != 3 or not status.isascii() or not status.isdigit():
        return "status must be three digits"
    cli_msg_id = params.get("climsgid", "")
    if cli_msg_id and not _alnum(cli_msg_id, 64):
        return "cliMsgId must be up to 64 letters or digits"
    to = params.get("to", "")
    if to and not (len(to) <= 20 and to.isascii() and to.isdigit()):
        return "to must be digits"
    timestamp = params.get("timestamp", "")
    if timestamp:
        try:
            timestamp = str(int(timestamp))
        except ValueError:
            return "timestamp must be an integer"
    charge = params.get("charge", "")
    if charge:
        try:
            value = float(charge)
        except ValueError:
            return "charge must be a number"
        if not math.isfinite(value) or value < 0:
            return "charge must be a non-negative number"
        charge = repr(value)
    return Receipt(api_msg_id, cli_msg_id, to, status, charge, timestamp)


_JSON_CLI_MSG_ID_CHARS = frozenset("-_")


def parse_json_callback(body: bytes) -> Receipt | str:
    """The receipt a One API JSON callback describes, or the reason it is refused (the same
    limits as :func:`parse_callback`; ``clientMessageId`` may also hold ``-`` and ``_``, as the
    One API's ``client_message_id_prefix`` does)."""
    try:
        report = one.parse_callback(body)
    except BulkSendError as exc:
        return f"malformed JSON callback: {exc}"
    if not math.isfinite(report.timestamp) or report.timestamp < 0:
        return "timestamp must be a non-negative number"
    cli_msg_id = report.client_message_id
    plain = "".join(c for c in cli_msg_id if c not in _JSON_CLI_MSG_ID_CHARS)
    if cli_msg_id and (len(cli_msg_id) > 64 or (plain and not _alnum(plain, 64))):
        return "clientMessageId must be up to 64 letters, digits, - or _"
    params = {
        "apimsgid": report.api_msg_id,
        "status": report.status_code,
        "to": report.to,
        "timestamp": str(int(report.timestamp)),
    }
    charge = _json_charge(body)
    if charge is not None:
        params["charge"] = charge
    receipt = parse_callback(params)
    if isinstance(receipt, str):
        return receipt.replace("apiMsgId", "messageId")
    return receipt._replace(cli_msg_id=cli_msg_id)


def _json_charge(body: bytes) -> str | None:
    """The optional numeric ``charge`` of a JSON callback (already known to be an object)."""
    value = json.loads(body).get("charge")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    return None


def _is_json(request: web.BaseRequest, body: bytes) -> bool:
    return request.content_type == "application/json" or body.lstrip()[:1] == b"{"


def _parse_form(data: str, into: dict[str, str]) -> None:
    """Form fields into ``into`` (names lowercased, the first occurrence wins); values are only
    unquoted when they need it, which callbacks' plain ids and digits rarely do."""
    for pair in data.split("&"):
        name, _, value = pair.partition("=")
        name = (unquote_plus(name) if "%" in name or "+" in name else name).lower()
        if name and name not in into:
            into[name] = unquote_plus(value) if "%" in value or "+" in value else value


def _key(api_msg_id: str, status: str) -> int | str:
    """The idempotency key: an int for a 32-hex id (the usual case, ~44 bytes), else a string."""
    if len(api_msg_id) == 32:
        try:
            return (int(api_msg_id, 16) << 10) | int(status)
        except ValueError:
            pass
    return f"{api_msg_id}:{status}"


@dataclass(slots=True)
class ReceiptStats:
    """Counters since the server started. Every callback lands in exactly one of stored,
    duplicates, replies, reply_duplicates, invalid, forbidden, failed."""

    stored: int = 0
    duplicates: int = 0
    replies: int = 0
    """Reply (MO) callbacks stored."""
    reply_duplicates: int = 0
    """Reply callbacks already stored (answered 200, not written again)."""
    opt_outs: int = 0
    """Numbers added to the opt-out file (by replies, or to catch up with the replies file)."""
    invalid: int = 0
    forbidden: int = 0
    failed: int = 0
    """Callbacks answered 500 because the file could not be written."""
    on_file: int = 0
    """Receipts already in the file when the server started (a restart)."""
    replies_on_file: int = 0
    """Replies already in the replies file when the server started."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _receipt_line(receipt: Receipt) -> str:
    api_msg_id, cli_msg_id, to, status, charge, timestamp = receipt
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = STATUS_TEXT.get(status, "")
    return f"{now},{api_msg_id},{cli_msg_id},{to},{status},{text},{charge},{timestamp}\n"


def _receipt_key_of_line(line: str) -> int | str | None:
    fields = line.split(",")
    return _key(fields[1], fields[4]) if len(fields) == 8 else None


class ReceiptsFile(AppendFile):
    """The receipts file itself (header, line format, idempotency keys, group commit), for the
    HTTP receiver and for another writer (``bulksend track``), which must hold the file's
    :class:`~bulksend.lock.FileLock` (``what="receipts"``) first, fsync it on a timer
    (:meth:`fsync_fd`) and close it."""

    def __init__(self, path: Path, on_error: Callable[[OSError, str], None]) -> None:
        super().__init__(
            path,
            on_error,
            header=RECEIPTS_HEADER,
            kind="receipts file",
            read_key=_receipt_key_of_line,
        )

    def submit(self, line: str | Receipt, key: int | str) -> asyncio.Future[None]:
        """Buffer one new receipt (or a line already formatted); resolves once written."""
        return super().submit(line if isinstance(line, str) else _receipt_line(line), key)


class ReceiptServer:
    """The callback receiver; ``async with ReceiptServer(path) as server:`` serves on
    :attr:`url` until the block ends (then flushes, fsyncs and closes the file)."""

    def __init__(
        self,
        out_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        basic_auth: tuple[str, str] | None = None,
        replies_path: str | os.PathLike[str] | None = None,
        opt_out_path: str | os.PathLike[str] | None = None,
        keywords: OptOutKeywords | None = None,
        fsync_interval: float = 0.5,
        shutdown_timeout: float = 2.0,
        on_storage_error: Callable[[StorageError], None] | None = None,
    ) -> None:
        if token is not None and (not token or not _alnum(token, 128)):
            raise ConfigError("the receipts token must be 1-128 letters or digits")
        if token:
            register_secret(token)
        self._basic: bytes | None = None
        if basic_auth is not None:
            user, password = basic_auth
            if not user or ":" in user or not password:
                raise ConfigError("basic auth needs a user (without ':') and a password")
            register_secret(password)
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
            register_secret(credentials)
            self._basic = f"Basic {credentials}".encode()
        self.out_path = Path(out_path)
        self.stats = ReceiptStats()
        self._host = host
        self._port = port
        self._token = token
        self._fsync_interval = fsync_interval
        self._shutdown_timeout = shutdown_timeout
        self._file = ReceiptsFile(self.out_path, self._storage_failed)
        self.replies_path = Path(replies_path or replies_path_for(self.out_path))
        self.inbox = Inbox(
            self.replies_path,
            None if opt_out_path is None else Path(opt_out_path),
            keywords or OptOutKeywords(),
            self._inbox_failed,
        )
        self._lock = FileLock(self.out_path, "receipts")
        self._on_storage_error = on_storage_error
        self.failed: StorageError | None = None
        self._runner: web.ServerRunner | None = None
        self._bound_port: int | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    def _inbox_failed(self, exc: OSError, action: str, path: Path) -> None:
        self._storage_failed(exc, action, path)

    def _storage_failed(self, exc: OSError, action: str, path: Path | None = None) -> None:
        """A write or fsync of the receipts, replies or opt-out file failed: callbacks can no
        longer be stored, so every one is answered 500 from now on (the gateway keeps them) and the
        owner is told."""
        if self.failed is None:
            self.failed = StorageError(str(path or self.out_path), exc, action)
            log.error("%s", self.failed)
            self._arrived.set()  # wake wait_quiet
            if self._on_storage_error is not None:
                self._on_storage_error(self.failed)

    def __repr__(self) -> str:
        return (
            f"<ReceiptServer {self.out_path} token={'***' if self._token else None}"
            f" basic_auth={'***' if self._basic else None}>"
        )

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the receipt server is already running")
        self._lock.acquire()  # one writer per receipts file: refuses (CampaignLocked) if held
        try:
            self.stats.on_file = self._file.open()
            try:
                self.stats.replies_on_file, self.stats.opt_outs = await self.inbox.open()
            except BaseException:
                self._file.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        # aiohttp's low-level server: one handler, no router or middlewares (callbacks come by
        # the thousand per second), and no access log (the path may hold the token).
        runner = web.ServerRunner(
            web.Server(self._handle, access_log=None),
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._close_files()
            self._lock.release()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])
        self._syncer = asyncio.create_task(self._sync_on_timer(), name="receipts-fsync")

    async def stop(self) -> None:
        """Stop serving (in-flight callbacks finish), write what is buffered, fsync, close."""
        runner, self._runner = self._runner, None
        syncer, self._syncer = self._syncer, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            if syncer is not None:
                syncer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await syncer
            try:
                self._close_files()
            finally:
                self._lock.release()

    def _close_files(self) -> None:
        try:
            self.inbox.close()
        finally:
            self._file.close()

    async def __aenter__(self) -> ReceiptServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the receipt server has not been started")
        return self._bound_port

    @property
    def url(self) -> str:
        """The callback URL to give the gateway: ``http://HOST:PORT/`` or ``.../<token>``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/{self._token or ''}"

    @property
    def stored(self) -> int:
        """Distinct receipts in the file (restored ones included)."""
        return len(self._file.keys)

    async def wait_quiet(self, quiet: float, max_wait: float) -> None:
        """Return once no callback arrived for ``quiet`` seconds, or after ``max_wait``."""
        deadline = time.monotonic() + max_wait
        while (left := deadline - time.monotonic()) > 0 and self.failed is None:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(quiet, left))
            except TimeoutError:
                return

    async def _sync_on_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._fsync_interval)
            for file in (self._file, *self.inbox.files):
                fd = file.fsync_fd()
                if fd is not None:
                    try:
                        await loop.run_in_executor(None, os.fsync, fd)
                    except OSError as exc:
                        self._storage_failed(exc, "fsync", file.path)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        stats = self.stats
        if request.method not in ("GET", "POST"):
            return web.Response(status=405, text="405: Method Not Allowed")
        tail = request.path[1:]
        if self._token is None:
            if tail:
                return web.Response(status=404, text="404: Not Found")
        elif not hmac.compare_digest(tail.encode(), self._token.encode()):
            stats.forbidden += 1
            log.warning("callback from %s refused: wrong or missing token", request.remote)
            return web.Response(status=403, text="403: Forbidden")
        if self._basic is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), self._basic
        ):
            stats.forbidden += 1
            log.warning("callback from %s refused: wrong or missing credentials", request.remote)
            return web.Response(
                status=401,
                text="401: Unauthorized",
                headers={"WWW-Authenticate": 'Basic realm="bulksend"'},
            )
        self._arrived.set()
        params: dict[str, str] = {}
        body = await request.read() if request.method == "POST" and request.body_exists else b""
        receipt: Receipt | str
        if body and _is_json(request, body):
            if is_json_reply(body):
                return await self._reply(request, parse_json_reply(body))
            receipt = parse_json_callback(body)
        else:
            form = body.decode("utf-8", "replace") if body else ""
            if form:
                _parse_form(form, params)
            query = request.rel_url.raw_query_string
            if query:
                _parse_form(query, params)
            if "momsgid" in params:
                return await self._reply(request, parse_form_reply(params, (form, query)))
            receipt = parse_callback(params)
        if isinstance(receipt, str):
            stats.invalid += 1
            log.warning("callback from %s refused (400): %s", request.remote, receipt)
            return web.Response(status=400, text=f"400: {receipt}")
        if self.failed is not None:
            stats.failed += 1
            return web.Response(status=500, text="500: cannot store the receipt")
        key = _key(receipt.api_msg_id, receipt.status)
        store = self._file
        duplicate = key in store.keys
        if duplicate:
            stats.duplicates += 1
            written = store.written()  # the first copy may still be in the buffer
        else:
            stats.stored += 1
            written = store.submit(_receipt_line(receipt), key)
        try:
            await asyncio.shield(written)  # shared by the whole group: never cancel it
        except OSError:
            stats.failed += 1
            if duplicate:
                stats.duplicates -= 1
            else:
                stats.stored -= 1
            return web.Response(status=500, text="500: cannot store the receipt")
        return web.Response(text="OK")

    async def _reply(self, request: web.BaseRequest, reply: Reply | str) -> web.Response:
        """Store a reply (MO) callback once; its opt-out, if it is one, before the answer."""
        stats = self.stats
        if isinstance(reply, str):
            stats.invalid += 1
            log.warning("reply callback from %s refused (400): %s", request.remote, reply)
            return web.Response(status=400, text=f"400: {reply}")
        if self.failed is not None:
            stats.failed += 1
            return web.Response(status=500, text="500: cannot store the reply")
        written, duplicate, new_opt_out = self.inbox.store(reply)
        try:
            await asyncio.shield(written)
        except OSError:
            stats.failed += 1
            return web.Response(status=500, text="500: cannot store the reply")
        if duplicate:
            stats.reply_duplicates += 1
        else:
            stats.replies += 1
            stats.opt_outs += new_opt_out
        return web.Response(text="OK")


EXIT_STORAGE = 4
"""``bulksend receipts`` exit status when the receipts file fails (the CLI's storage code)."""

LINGER_QUIET = 2.0
"""After a campaign, :func:`collect_receipts` keeps listening until callbacks pause this long..."""
LINGER_MAX = 120.0
"""... or at most this long."""


@contextlib.asynccontextmanager
async def collect_receipts(
    listen: str | None,
    results_path: str | os.PathLike[str],
    *,
    quiet: float = LINGER_QUIET,
    max_wait: float = LINGER_MAX,
    on_storage_error: Callable[[StorageError], None] | None = None,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    opt_out_path: str | os.PathLike[str] | None = None,
    keywords: OptOutKeywords | None = None,
) -> AsyncIterator[ReceiptServer | None]:
    """Run a receiver on ``listen`` (``HOST:PORT``; nothing when None) into the receipts file
    beside ``results_path`` (replies into the replies file beside that) for the duration of the
    block and, when the block ends normally, until callbacks have been quiet for ``quiet`` seconds
    (at most ``max_wait``). Receipts that come later need a standing receiver (``bulksend
    receipts``) on the same file. Refuses (ConfigError) an address other than loopback without
    ``token`` or ``basic_auth``."""
    if listen is None:
        yield None
        return
    host, port = parse_listen(listen)
    require_credentials(host, token, basic_auth)
    async with ReceiptServer(
        receipts_path_for(results_path),
        host,
        port,
        token,
        basic_auth=basic_auth,
        opt_out_path=opt_out_path,
        keywords=keywords,
        on_storage_error=on_storage_error,
    ) as server:
        log.info("collecting delivery receipts on %s into %s", server.url, server.out_path)
        yield server
        log.info(
            "waiting for the last delivery callbacks (until none for %.0f s, at most %.0f s); "
            "later receipts need a standing receiver: bulksend receipts",
            quiet,
            max_wait,
        )
        await server.wait_quiet(quiet, max_wait)
        if server.failed is not None:
            return
        log.info("%d delivery receipts in %s", server.stored, server.out_path)


LISTENING = "bulksend receipts listening on "
"""The start of the one line ``bulksend receipts`` prints once it listens (token masked)."""


def serve(
    listen: str,
    out_path: str | os.PathLike[str],
    token: str | None = None,
    *,
    basic_auth: tuple[str, str] | None = None,
    opt_out_path: str | os.PathLike[str] | None = None,
    keywords: OptOutKeywords | None = None,
    metrics_listen: str | None = None,
) -> int:
    """``bulksend receipts``: serve until SIGINT/SIGTERM, then flush, fsync and report on stderr.
    Exit status 0; 1 when the address cannot be used. An address other than loopback without
    ``token`` or ``basic_auth`` is refused with :class:`~bulksend.errors.ConfigError` (forged
    callbacks would falsify the report and opt real customers out). Another writer of the same
    file raises :class:`~bulksend.errors.CampaignLocked` (the CLI exits 3); a file that cannot be
    created raises :class:`~bulksend.errors.StorageError`, and one that fails while serving stops
    it with exit status 4 (the CLI's code for storage failures). Replies go to the replies file
    beside ``out_path``, opt-outs to ``opt_out_path``. With ``metrics_listen``, Prometheus metrics
    of the receiver at ``/metrics`` there (:mod:`bulksend.metrics`)."""
    host, port = parse_listen(listen)
    require_credentials(host, token, basic_auth)
    stop = asyncio.Event()
    server = ReceiptServer(
        out_path,
        host,
        port,
        token,
        basic_auth=basic_auth,
        opt_out_path=opt_out_path,
        keywords=keywords,
        on_storage_error=lambda _exc: stop.set(),
    )
    if metrics_listen is not None:
        parse_listen(metrics_listen)  # a bad address is a usage error before anything starts
    return aio.run(_serve(server, stop, metrics_listen))


async def _serve(
    server: ReceiptServer, stop: asyncio.Event, metrics_listen: str | None = None
) -> int:
    from bulksend.metrics import receipt_metrics, serve_metrics

    registry = receipt_metrics(server.stats.as_dict) if metrics_listen else None
    async with serve_metrics(metrics_listen, registry):
        return await _serve_receipts(server, stop)


async def _serve_receipts(server: ReceiptServer, stop: asyncio.Event) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"bulksend receipts: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        shown = server.url if server._token is None else server.url.rsplit("/", 1)[0] + "/***"
        print(f"{LISTENING}{shown} -> {server.out_path}", flush=True)
        log.info("replies (MO) into %s", server.replies_path)
        await stop.wait()
    finally:
        await server.stop()
    counters = " ".join(f"{name}={value}" for name, value in server.stats.as_dict().items())
    print(f"bulksend receipts stopped: {counters}", file=sys.stderr, flush=True)
    if server.failed is not None:
        print(f"bulksend: error: {server.failed}", file=sys.stderr, flush=True)
        return EXIT_STORAGE
    return 0


receipt_key = _key
"""The idempotency key of a receipt, ``(api_msg_id, status)``, as :class:`ReceiptsFile` keeps it."""
