"""``bulksend simulate``: the simulator as a server process, for demos and benchmarks.

A thin layer over :class:`~bulksend.simulator.app.Simulator`: :func:`add_arguments` declares one
flag per knob of :class:`~bulksend.simulator.faults.Faults` plus where to listen and the account,
:func:`run` serves until SIGTERM or SIGINT. Promises, relied on by tests and benchmarks:

* once listening, exactly one line goes to stdout, flushed:
  ``bulksend simulator listening on http://HOST:PORT`` (the real port when ``--port 0``);
* SIGTERM/SIGINT stop it cleanly (in-flight requests finish, the ledger is flushed and closed) and
  the exit status is 0; a port that cannot be bound exits 1 with the reason on stderr;
* nothing is logged per request unless ``--access-log`` (method and path only, never a password);
  a one-line summary of the counters goes to stderr on exit;
* the in-memory ledger keeps no numbers (``querymsg`` still works), so memory stays flat at
  millions of messages; the full record is the ``--ledger`` file;
* with ``--callback-url``, messages sent with ``callback=1..7`` get their delivery played and
  pushed there (``callbacks.py``; knobs ``--delivery-delay``, ``--delivery-failure-rate``,
  ``--callback-tries``, ``--callback-backoff``); the URL is never printed (it may hold a token);
* ``--two-way-number`` is the account's own number (the sender of ``mo=1`` without ``from``);
  ``--minute-seconds`` is how many real seconds a minute of ``deliv_time``/``scheduled_time``
  delay lasts (60: real time; 0.01 lets a test see a 10-minute schedule pass in 0.1 s);
* uvloop drives the event loop when it is installed;
* ``--api one`` serves the One API instead (``one_api.py``: ``/v1/message``, ``/v1/balance``,
  ``/v1/message/<id>``) with the same fault, credit, callback and ledger flags, the key of
  ``--api-key`` (default :data:`~bulksend.simulator.one_api.DEFAULT_API_KEY`) and the flags of
  :func:`~bulksend.simulator.one_api.add_one_api_arguments`; the same listening line and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from aiohttp.log import access_logger

from bulksend.simulator.app import (
    DEFAULT_API_ID,
    DEFAULT_MINUTE_SECONDS,
    DEFAULT_PASSWORD,
    DEFAULT_TWO_WAY_NUMBER,
    DEFAULT_USER,
    Simulator,
)
from bulksend.simulator.codes import RECIPIENT_CODES
from bulksend.simulator.faults import (
    COMMANDS,
    DEFAULT_FAULT_COMMANDS,
    DEFAULT_REPLY_TEXTS,
    Faults,
)
from bulksend.simulator.one_api import OneApiSimulator, add_one_api_arguments, one_api_from_args

__all__ = ["LISTENING", "add_arguments", "faults_from_args", "run"]

LISTENING = "bulksend simulator listening on "
"""The start of the one line printed once the server listens; the URL follows."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``simulate`` flags on ``parser``."""
    parser.add_argument(
        "--api",
        choices=("legacy", "one"),
        default="legacy",
        help="which API to serve: the legacy HTTP API (/http/...), or the One API (/v1/..., "
        "one_api.py; the account flags --user/--password/--api-id/--session-ttl and "
        "--reject-code are then unused) [%(default)s]",
    )
    add_one_api_arguments(parser)
    where = parser.add_argument_group("server")
    where.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    where.add_argument(
        "--port", type=int, default=0, help="TCP port; 0 picks a free one [%(default)s]"
    )
    where.add_argument(
        "--ledger",
        metavar="FILE",
        help="write every accepted message to this CSV "
        "(to,api_msg_id,climsgid,parts,time,text,options,status)",
    )
    where.add_argument(
        "--access-log",
        action="store_true",
        help="log each request (method and path) to stderr; off by default for speed",
    )

    account = parser.add_argument_group("account")
    account.add_argument("--user", default=DEFAULT_USER, help="account user name [%(default)s]")
    account.add_argument(
        "--password", default=DEFAULT_PASSWORD, help="account password [%(default)s]"
    )
    account.add_argument("--api-id", default=DEFAULT_API_ID, help="account API id [%(default)s]")
    account.add_argument(
        "--credit",
        type=float,
        default=None,
        metavar="N",
        help="credit balance, one credit per message part; ERR 301 when spent [unlimited]",
    )
    account.add_argument(
        "--session-ttl",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="idle seconds before a session id answers ERR 003 [%(default)s]",
    )

    account.add_argument(
        "--batch-ttl",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="seconds after startbatch at which a batch id answers ERR 201 [%(default)s]",
    )
    account.add_argument(
        "--batch-expire-every",
        type=int,
        default=None,
        metavar="K",
        help="a batch id answers ERR 201 after K senditem/quicksend requests [never]",
    )

    scheduling = parser.add_argument_group("two-way number and scheduling")
    scheduling.add_argument(
        "--two-way-number",
        type=_digits,
        default=DEFAULT_TWO_WAY_NUMBER,
        metavar="DIGITS",
        help="the account's two-way number: sender of mo=1 messages without from [%(default)s]",
    )
    scheduling.add_argument(
        "--minute-seconds",
        type=_non_negative,
        default=DEFAULT_MINUTE_SECONDS,
        metavar="SECONDS",
        help="real seconds per minute of deliv_time/scheduled_time delay (time scale for "
        "scheduled messages) [%(default)s]",
    )

    faults = parser.add_argument_group("faults and load")
    faults.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay before answering [0]"
    )
    faults.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="uniform +/- spread around --latency, never below 0 [0]",
    )
    faults.add_argument(
        "--http-503-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of requests answered HTTP 503, unprocessed [0]",
    )
    faults.add_argument(
        "--err-901-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of requests answered ERR 901, unprocessed [0]",
    )
    faults.add_argument(
        "--drop-before-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of connections aborted before processing [0]",
    )
    faults.add_argument(
        "--drop-after-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of requests processed, then their connection aborted (maybe sent) [0]",
    )
    faults.add_argument(
        "--throttle",
        type=float,
        default=None,
        metavar="MPS",
        help="messages per second allowed; more gets HTTP 429 + Retry-After [unlimited]",
    )
    faults.add_argument(
        "--throttle-burst",
        type=float,
        default=None,
        metavar="MESSAGES",
        help="messages the throttle bucket holds [one second's worth]",
    )
    faults.add_argument(
        "--retry-after",
        dest="throttle_retry_after",
        choices=["integer", "fractional", "absent"],
        default="integer",
        help="Retry-After on a 429: whole seconds >= 1, fractional, or none [%(default)s]",
    )
    faults.add_argument(
        "--per-recipient-latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="processing time added per number of a sendmsg request [0]",
    )
    faults.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="requests in progress at once; one more is refused (--over-connections) [no cap]",
    )
    faults.add_argument(
        "--over-connections",
        choices=["503", "refuse"],
        default="503",
        help="what a request over --max-connections gets [%(default)s]",
    )
    faults.add_argument(
        "--reject-prefix",
        action="append",
        default=[],
        metavar="DIGITS",
        help="refuse numbers starting with DIGITS, per recipient (repeatable)",
    )
    faults.add_argument(
        "--reject-suffix",
        action="append",
        default=[],
        metavar="DIGITS",
        help="refuse numbers ending with DIGITS, per recipient (repeatable)",
    )
    faults.add_argument(
        "--reject-code",
        type=int,
        default=114,
        choices=sorted(RECIPIENT_CODES),
        help="error code for rejected numbers [%(default)s]",
    )
    faults.add_argument(
        "--fault-command",
        action="append",
        choices=sorted(COMMANDS),
        metavar="COMMAND",
        help=f"command that latency, 503, 901 and drops apply to (repeatable; one of "
        f"{', '.join(sorted(COMMANDS))}) [{', '.join(sorted(DEFAULT_FAULT_COMMANDS))}]",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed for reproducible faults")

    callbacks = parser.add_argument_group("delivery callbacks")
    callbacks.add_argument(
        "--callback-url",
        metavar="URL",
        help="the account's callback URL: delivery statuses of messages sent with callback=1..7 "
        "are POSTed there [none]",
    )
    callbacks.add_argument(
        "--delivery-delay",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="from acceptance to status 003, and from 003 to the final status [%(default)s]",
    )
    callbacks.add_argument(
        "--delivery-failure-rate",
        type=float,
        default=0.05,
        metavar="P",
        help="share of messages whose final status is an error (005/007/009/010) [%(default)s]",
    )
    callbacks.add_argument(
        "--callback-tries",
        type=int,
        default=8,
        metavar="N",
        help="attempts per callback before giving up [%(default)s]",
    )
    callbacks.add_argument(
        "--callback-backoff",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="wait before the first callback retry, doubling after each [%(default)s]",
    )
    callbacks.add_argument(
        "--reply-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of delivered messages whose recipient replies; the reply is pushed to "
        "--callback-url in the API's reply format (legacy form, One API JSON) [%(default)s]",
    )
    callbacks.add_argument(
        "--reply-text",
        action="append",
        metavar="TEXT",
        help="what recipients reply (repeatable: a mix, drawn at random) "
        "[STOP, Stop please, Thanks!, Who is this?, Stopwatch?]",
    )

    queries = parser.add_argument_group("status queries (querymsg, GET /v1/message/<id>)")
    queries.add_argument(
        "--query-mps",
        type=float,
        default=None,
        metavar="N",
        help="status queries a second allowed; over it: HTTP 429 + Retry-After [unlimited]",
    )
    queries.add_argument(
        "--message-ttl",
        type=_non_negative,
        default=None,
        metavar="SECONDS",
        help="message ids older than this are no longer known to queries [kept for ever]",
    )


def _digits(value: str) -> str:
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"not a number in international format: {value!r}")
    return value


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The :class:`Faults` the parsed flags describe (ValueError for an out-of-range value)."""
    return Faults(
        latency=args.latency,
        jitter=args.jitter,
        http_503_rate=args.http_503_rate,
        err_901_rate=args.err_901_rate,
        drop_before_rate=args.drop_before_rate,
        drop_after_rate=args.drop_after_rate,
        throttle_mps=args.throttle,
        throttle_burst=args.throttle_burst,
        throttle_retry_after=args.throttle_retry_after,
        per_recipient_latency=args.per_recipient_latency,
        max_connections=args.max_connections,
        over_connections=args.over_connections,
        credit=args.credit,
        reject_prefixes=tuple(args.reject_prefix),
        reject_suffixes=tuple(args.reject_suffix),
        reject_code=args.reject_code,
        session_ttl=args.session_ttl,
        seed=args.seed,
        commands=frozenset(args.fault_command or DEFAULT_FAULT_COMMANDS),
        batch_ttl=args.batch_ttl,
        batch_expire_every=args.batch_expire_every,
        delivery_delay=args.delivery_delay,
        delivery_failure_rate=args.delivery_failure_rate,
        callback_tries=args.callback_tries,
        callback_backoff=args.callback_backoff,
        reply_rate=args.reply_rate,
        reply_texts=tuple(args.reply_text) if args.reply_text else DEFAULT_REPLY_TEXTS,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; the process exit status."""
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        print(f"bulksend simulate: {exc}", file=sys.stderr)
        return 1
    if args.access_log:
        _log_access_to_stderr()
    simulator: Simulator | OneApiSimulator
    if args.api == "one":
        simulator = one_api_from_args(args, faults)
    else:
        simulator = _legacy_from_args(args, faults)
    try:
        simulator.queries.query_mps = args.query_mps
    except ValueError as exc:
        print(f"bulksend simulate: --query-mps: {exc}", file=sys.stderr)
        return 1
    simulator.queries.message_ttl = args.message_ttl
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(simulator))


def _legacy_from_args(args: argparse.Namespace, faults: Faults) -> Simulator:
    return Simulator(
        user=args.user,
        password=args.password,
        api_id=args.api_id,
        faults=faults,
        host=args.host,
        port=args.port,
        ledger_path=args.ledger,
        access_log=args.access_log,
        keep_numbers=False,  # nobody can read them here; the record is the --ledger file
        callback_url=args.callback_url,
        two_way_number=args.two_way_number,
        minute_seconds=args.minute_seconds,
    )


async def _serve(simulator: Simulator | OneApiSimulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await simulator.start()
    except OSError as exc:
        print(f"bulksend simulate: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{LISTENING}{simulator.url}", flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
    counters = " ".join(f"{name}={value}" for name, value in simulator.stats.as_dict().items())
    queries = simulator.queries.stats
    counters += f" status_queries={queries.queries} status_queries_throttled={queries.throttled}"
    print(f"bulksend simulator stopped: {counters}", file=sys.stderr, flush=True)
    return 0


def _log_access_to_stderr() -> None:
    """Send aiohttp's access log to stderr whatever the root logger's configuration."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return None
    return uvloop.new_event_loop
