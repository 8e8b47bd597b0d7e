"""The command line of ``bulksend track``: parsing and printing only (:mod:`bulksend.track` asks
the gateway, :mod:`bulksend.track_view` draws the progress and the summary)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["add_track_parser", "run_track"]


def _duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``48h``, ``7d`` -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1.0)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (90s, 30m, 48h, 7d): {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def add_track_parser(sub: Any, positive_int: Callable[[str], int]) -> None:
    """``bulksend track``'s arguments."""
    from bulksend.track import DEFAULT_CONCURRENCY, DEFAULT_RATE

    track = sub.add_parser(
        "track",
        help="ask the gateway for the delivery status of messages not final yet (no callback URL)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "One status query per message that has no final status in <results>.receipts.csv;\n"
            "answers are written there as callbacks would be. Rerun to ask again: final\n"
            "messages are never asked twice. Credentials as for send (never on the command line).\n\n"
            "exit codes: 0 every message asked was answered; 1 bad usage; 2 some queries got no\n"
            "answer (rerun) or the gateway refused them; 3 a receiver holds the receipts file\n"
            "(nothing asked); 4 the receipts file could not be written; 130/143 interrupted."
        ),
    )
    track.add_argument("results", type=Path, help="the campaign's results file")
    track.add_argument("--config", type=Path, help="TOML config file")
    track.add_argument("--profile", help="profile of the config file to use")
    track.add_argument("--api", choices=["legacy", "one"], help="wire protocol [legacy]")
    track.add_argument("--endpoint", help="gateway base URL")
    track.add_argument("--user", help="Clickatell user (or BULKSEND_USER)")
    track.add_argument("--api-id", dest="api_id", help="Clickatell API id (or BULKSEND_API_ID)")
    track.add_argument("--auth", choices=["password", "session"])
    track.add_argument("--insecure", action="store_true", default=None)
    track.add_argument(
        "--rate",
        type=_positive_float,
        default=DEFAULT_RATE,
        help="status queries a second at most [%(default)s]",
    )
    track.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        help="queries in flight [%(default)s]",
    )
    track.add_argument(
        "--until-final",
        action="store_true",
        help="ask again in rounds (backing off) until every message is final or too old",
    )
    track.add_argument(
        "--max-age",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="do not ask about messages sent longer ago than this (90s, 30m, 48h, 7d) [72h]",
    )
    track.add_argument(
        "--poll-interval",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="first wait between rounds with --until-final, doubling up to 15m [30s]",
    )
    track.add_argument(
        "--charges",
        action="store_true",
        help="legacy API: ask getmsgcharge instead of querymsg (one call as well; its answer "
        "also gives the charge, so the report sums credits)",
    )
    track.add_argument("--json", action="store_true", help="print the summary as JSON")
    track.add_argument("--no-progress", dest="progress", action="store_const", const="off")


def run_track(args: argparse.Namespace) -> int:
    """``bulksend track``: load the account, ask, print the summary; the exit code."""
    from bulksend import aio
    from bulksend.config import load_account
    from bulksend.track import TrackOptions, track_campaign
    from bulksend.track_view import make_track_progress, print_track_summary

    cli = {key: getattr(args, key) for key in ("api", "endpoint", "user", "api_id", "auth")}
    cli["insecure"] = args.insecure
    account = load_account(cli, config_path=args.config, profile=args.profile, prompt_password=True)
    options = TrackOptions(
        rate=args.rate,
        concurrency=args.concurrency,
        until_final=args.until_final,
        charges=args.charges,
    )
    if args.max_age is not None:
        options = replace(options, max_age=args.max_age)
    if args.poll_interval is not None:
        options = replace(options, poll_interval=args.poll_interval)
    progress = None if args.json else make_track_progress(args.progress or "auto")
    try:
        summary = aio.run(
            track_campaign(
                args.results, account, options, on_progress=progress, handle_signals=True
            )
        )
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print(summary.to_json())
    else:
        print_track_summary(summary)
    if summary.stopped:
        sys.stderr.write(f"bulksend track: stopped: {summary.stopped}\n")
    return summary.exit_code
