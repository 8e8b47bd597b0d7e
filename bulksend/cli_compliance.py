"""The command line of the compliance features: ``bulksend receipts`` (delivery statuses and
replies, the opt-out list, the receiver's credentials) and ``send``'s quiet-hours flags. Parsing
only: :mod:`bulksend.receipts` serves, :mod:`bulksend.config` validates the window."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bulksend.errors import ConfigError

__all__ = ["add_receipts_parser", "add_window_arguments", "run_receipts"]


def add_window_arguments(p: argparse.ArgumentParser, column: Callable[[str], str | int]) -> None:
    """``send``'s ``--send-window``, ``--send-days``, ``--timezone-column``,
    ``--default-timezone`` and ``--wait``."""
    window = p.add_argument_group("quiet hours (each recipient's local time)")
    window.add_argument(
        "--send-window",
        metavar="HH:MM-HH:MM",
        help="send a row only while its number's local time is inside (may cross midnight: "
        "20:00-08:00); the others stay pending for a later run or --wait",
    )
    window.add_argument(
        "--send-days", metavar="DAYS", help="days the window opens: Mon-Fri, Sat,Sun"
    )
    window.add_argument(
        "--timezone-column",
        type=column,
        metavar="COL",
        help="column of IANA zone names (America/New_York) that overrides the numbering plan",
    )
    window.add_argument(
        "--default-timezone",
        metavar="ZONE",
        help="zone of numbers the numbering plan cannot place [UTC]",
    )
    window.add_argument(
        "--wait",
        action="store_true",
        default=None,
        help="stay up and send each deferred group as its window opens",
    )


def add_receipts_parser(sub: Any) -> None:
    """The ``bulksend receipts`` subcommand."""
    receipts = sub.add_parser(
        "receipts", help="receive delivery-status and reply (MO) callbacks into CSV files"
    )
    receipts.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="[127.0.0.1:8080]"
    )
    receipts.add_argument("--out", type=Path, required=True, help="receipts CSV (appended to)")
    receipts.add_argument(
        "--token",
        help="accept callbacks only at /TOKEN (or BULKSEND_RECEIPTS_TOKEN; never logged)",
    )
    receipts.add_argument(
        "--auth-user",
        metavar="USER",
        help="require HTTP basic auth as USER, password from BULKSEND_RECEIPTS_PASSWORD",
    )
    receipts.add_argument(
        "--record-opt-outs",
        type=Path,
        metavar="FILE",
        help="append the number of each reply that opts out (STOP, ...) to FILE, once "
        "(the format --exclude reads)",
    )
    receipts.add_argument(
        "--opt-out-keywords",
        metavar="LIST",
        help="comma-separated first words that opt out, case and punctuation ignored "
        "[STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,REVOKE,OPTOUT,OPT OUT]",
    )
    receipts.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )


def run_receipts(args: argparse.Namespace) -> int:
    from bulksend.receipts import serve
    from bulksend.replies import OptOutKeywords

    token = args.token or os.environ.get("BULKSEND_RECEIPTS_TOKEN") or None
    basic_auth = None
    if args.auth_user:
        password = os.environ.get("BULKSEND_RECEIPTS_PASSWORD")
        if not password:
            raise ConfigError("--auth-user needs the password in BULKSEND_RECEIPTS_PASSWORD")
        basic_auth = (args.auth_user, password)
    keywords = None
    if args.opt_out_keywords is not None:
        try:
            keywords = OptOutKeywords.parse(args.opt_out_keywords)
        except ValueError as exc:
            raise ConfigError(f"--opt-out-keywords: {exc}") from None
    return serve(
        args.listen,
        args.out,
        token,
        basic_auth=basic_auth,
        opt_out_path=args.record_opt_outs,
        keywords=keywords,
        metrics_listen=args.metrics_listen,
    )


def replies_sections(report: Any) -> list[Any]:
    """The HTML report's section on replies and opt-outs (:class:`bulksend.report_html.Section`),
    when the report read a replies file; the numbers listed are the recipients who opted out."""
    if not report.replies_path:
        return []
    import html

    from bulksend.report_html import Section

    shown = report.opt_outs[:200]
    text = (
        f"<p>{report.replies:,} replies (MO) in {html.escape(report.replies_path)}, "
        f"{report.replies_from_recipients:,} from this campaign's recipients; "
        f'<span id="fig-opt-outs" data-value="{len(report.opt_outs)}">'
        f"{len(report.opt_outs):,}</span> of them opted out (STOP, ...)"
    )
    if report.opt_outs_elsewhere:
        text += f"; {report.opt_outs_elsewhere:,} other numbers opted out"
    text += ".</p>"
    if shown:
        text += "<p>" + ", ".join(f"+{html.escape(n)}" for n in shown)
        if len(report.opt_outs) > len(shown):
            text += f" and {len(report.opt_outs) - len(shown):,} more (bulksend report --json)"
        text += "</p>"
    return [Section("replies", "Replies and opt-outs", text)]
