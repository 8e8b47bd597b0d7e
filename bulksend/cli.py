"""The ``bulksend`` command: parses arguments, builds settings, calls the Python API. No logic of
its own beyond turning errors into messages and exit codes (never a traceback, never a secret)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bulksend import __version__
from bulksend.cli_compliance import add_receipts_parser, add_window_arguments, replies_sections
from bulksend.cli_track import add_track_parser, run_track
from bulksend.errors import (
    BulkSendError,
    CampaignLocked,
    CampaignRepeated,
    ConfigError,
    GatewayError,
    InputError,
    StorageError,
    redact,
)

__all__ = ["main"]

log = logging.getLogger("bulksend")

EXIT_USAGE = 1
EXIT_LOCKED = 3
EXIT_STORAGE = 4


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes: a live display on the terminal
    redirects it to print log lines above itself instead of through it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(debug: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("bulksend: %(levelname)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("bulksend").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        logging.getLogger("bulksend.client").setLevel(logging.WARNING)

    def show_warning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        sys.stderr.write(f"bulksend: warning: {redact(str(message))}\n")

    warnings.showwarning = show_warning


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {redact(message)}\n")
        raise SystemExit(EXIT_USAGE)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _column(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _add_send_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="recipient file: CSV or one number per line")
    message = p.add_mutually_exclusive_group(required=True)
    message.add_argument("--text", help="the message (one text for every recipient)")
    message.add_argument(
        "--text-file", type=Path, metavar="PATH", help="the message from a UTF-8 file"
    )
    message.add_argument("--data", metavar="HEX", help="binary message payload (with --udh)")
    message.add_argument(
        "--data-file", type=Path, metavar="PATH", help="binary message payload from a file"
    )
    p.add_argument("--udh", metavar="HEX", help="user data header of a binary message")
    p.add_argument(
        "--flash", action="store_true", default=None, help="flash message (msg_type=SMS_FLASH)"
    )
    p.add_argument(
        "--deliver-in",
        type=_non_negative_int,
        metavar="MINUTES",
        help="deliver after this delay (deliv_time, at most 10080); cancel with bulksend cancel",
    )
    p.add_argument(
        "--validity", type=_positive_int, metavar="MINUTES", help="how long the network tries"
    )
    p.add_argument(
        "--max-credits", type=float, metavar="N", help="refuse messages costing more credits"
    )
    p.add_argument(
        "--exclude",
        type=Path,
        action="append",
        metavar="FILE",
        help="opt-out / suppression list (repeatable): its numbers are not sent",
    )
    p.add_argument(
        "--record-opt-outs",
        type=Path,
        metavar="FILE",
        help="append numbers the gateway refuses as opted out (ERR 122), and those that reply "
        "STOP to the --receipts-listen receiver, to FILE",
    )
    add_window_arguments(p, _column)
    p.add_argument(
        "--allow-partial",
        action="store_true",
        default=None,
        help="when the credit is short, send what it covers (the rest stays pending)",
    )
    p.add_argument(
        "--no-balance-check",
        dest="check_balance",
        action="store_false",
        default=None,
        help="skip the credit pre-flight (getbalance before the first message)",
    )
    p.add_argument(
        "--config", type=Path, help="TOML config file (see config/bulksend.example.toml)"
    )
    p.add_argument("--profile", help="profile of the config file to use")
    p.add_argument(
        "--api",
        choices=["legacy", "one"],
        help="wire protocol: legacy HTTP API or the One API (key from BULKSEND_API_KEY or "
        "api_key_env; never the command line) [legacy] (or BULKSEND_API)",
    )
    p.add_argument(
        "--endpoint",
        help="gateway base URL [https://api.clickatell.com; One API: https://platform.clickatell.com]",
    )
    p.add_argument("--user", help="Clickatell user (or BULKSEND_USER)")
    p.add_argument("--api-id", dest="api_id", help="Clickatell API id (or BULKSEND_API_ID)")
    p.add_argument("--auth", choices=["password", "session"], help="auth per request or session")
    p.add_argument("--from", dest="sender", help="sender id or two-way number")
    p.add_argument("--mo", action="store_true", default=None, help="send from a two-way number")
    p.add_argument("--column", type=_column, help="column NAME or 0-based INDEX [auto]")
    p.add_argument("--out", type=Path, help="results file [FILE.results.csv beside the input]")
    p.add_argument("--concurrency", type=_positive_int, help="batches in flight [32]")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        help="numbers per request [600; 300 for GET; One API: 200, its maximum]",
    )
    p.add_argument("--method", choices=["post", "get"], help="HTTP method [post]")
    p.add_argument("--rate", type=float, help="hard cap in messages per second [unlimited]")
    p.add_argument("--unicode", choices=["auto", "on", "off"], help="UCS-2 encoding [auto]")
    p.add_argument("--max-parts", type=_positive_int, help="refuse texts needing more parts [3]")
    p.add_argument("--callback", type=int, choices=range(8), help="delivery callbacks 0..7 [0]")
    p.add_argument("--default-country", help="region for national numbers, e.g. ZA, GB")
    p.add_argument("--strict", action="store_true", default=None, help="full numbering-plan check")
    p.add_argument(
        "--no-dedupe",
        dest="dedupe",
        action="store_false",
        default=None,
        help="send repeated numbers too (memory stays flat)",
    )
    p.add_argument(
        "--resend-unknown",
        action="store_true",
        default=None,
        help="send rows recorded unknown again (those found in delivery receipts are not)",
    )
    p.add_argument("--restart", action="store_true", default=None, help="move old results aside")
    p.add_argument(
        "--again",
        action="store_true",
        default=None,
        help="send although this list and message already went out under another results file",
    )
    p.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const="off",
        help="no live display (plain log lines are still printed when not on a terminal)",
    )
    p.add_argument("--insecure", action="store_true", default=None, help="skip TLS verification")
    p.add_argument("--dry-run", action="store_true", default=None, help="count only; no network")
    p.add_argument(
        "--receipts-listen",
        metavar="HOST:PORT",
        help="also receive delivery and reply callbacks here, into <results>.receipts.csv and "
        "<results>.replies.csv (off loopback: BULKSEND_RECEIPTS_TOKEN or --receipts-auth-user)",
    )
    p.add_argument(
        "--receipts-auth-user",
        metavar="USER",
        help="the receiver requires HTTP basic auth as USER (password: BULKSEND_RECEIPTS_PASSWORD)",
    )
    p.add_argument(
        "--opt-out-keywords",
        metavar="LIST",
        help="comma-separated first words of a reply that opt out (with --record-opt-outs, "
        "their numbers are appended) [STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,REVOKE,OPTOUT,OPT OUT]",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while the campaign runs",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bulksend", description="Fast, resumable SMS campaigns over Clickatell.")
    parser.add_argument("--version", action="version", version=f"bulksend {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs (secrets redacted)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    send = sub.add_parser(
        "send",
        help="run a campaign",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "The password comes from BULKSEND_PASSWORD or the config file (password_env),\n"
            "never from the command line. Rerun the same command to resume.\n\n"
            "exit codes: 0 every row accounted; 1 bad usage or input; 2 stopped on a fatal\n"
            "gateway error (rerun to resume); 3 another run holds this campaign, or the same\n"
            "list and message already went out under another --out (nothing sent; --again);\n"
            "4 a file could not be written (disk full, I/O error, read-only: fix it,\n"
            "then rerun to resume); 130/143 interrupted by SIGINT/SIGTERM."
        ),
    )
    _add_send_arguments(send)

    demo = sub.add_parser("demo", help="a campaign against the embedded simulator")
    demo.add_argument(
        "--recipients",
        type=_positive_int,
        default=None,
        help="rows of the sample [100000; 2000 for a personalised legacy demo]",
    )
    demo.add_argument(
        "--api",
        choices=("legacy", "one"),
        default="legacy",
        help="the simulated gateway: the legacy HTTP API or the One API [legacy]",
    )
    demo.add_argument(
        "--personalised",
        action="store_true",
        help="send 'Hi #name#, ...' filled from the sample's name column",
    )
    demo.add_argument("--dir", type=Path, default=Path("bulksend-demo"))
    demo.add_argument("--no-progress", dest="progress", action="store_const", const="off")
    demo.add_argument("--latency", type=float, default=0.08)
    demo.add_argument("--jitter", type=float, default=0.04)
    demo.add_argument("--concurrency", type=_positive_int, default=32)

    simulate = sub.add_parser("simulate", help="run the Clickatell HTTP API simulator")
    from bulksend.simulator import cli as sim_cli

    sim_cli.add_arguments(simulate)

    add_receipts_parser(sub)

    status = sub.add_parser(
        "status",
        help="a campaign's state (safe while it runs): holder, rows, pending, input; "
        "without a results file, the campaigns the registry knows",
    )
    status.add_argument(
        "results", type=Path, nargs="?", help="the campaign's results file [all known runs]"
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of lines")
    status.add_argument(
        "--no-pending",
        dest="pending",
        action="store_false",
        help="skip reading the input to count pending rows (fast on huge files)",
    )

    cancel = sub.add_parser(
        "cancel", help="stop a scheduled campaign's messages that have not left (delmsg)"
    )
    cancel.add_argument("results", type=Path, help="the campaign's results file")
    cancel.add_argument("--config", type=Path, help="TOML config file")
    cancel.add_argument("--profile", help="profile of the config file to use")
    cancel.add_argument("--endpoint", help="gateway base URL")
    cancel.add_argument("--user", help="Clickatell user (or BULKSEND_USER)")
    cancel.add_argument("--api-id", dest="api_id", help="Clickatell API id (or BULKSEND_API_ID)")
    cancel.add_argument("--auth", choices=["password", "session"])
    cancel.add_argument("--concurrency", type=_positive_int, help="delmsg calls in flight [32]")
    cancel.add_argument("--insecure", action="store_true", default=None)
    cancel.add_argument(
        "--force", action="store_true", help="also for a campaign sent without --deliver-in"
    )
    cancel.add_argument("--json", action="store_true", help="print JSON instead of lines")

    add_track_parser(sub, _positive_int)

    report = sub.add_parser("report", help="summarise a campaign's results and receipts")
    report.add_argument("results", type=Path, help="the campaign's results file")
    report.add_argument("--receipts", type=Path, help="receipts file to join (delivery figures)")
    report.add_argument(
        "--replies",
        type=Path,
        help="replies file to count (replies, opt-outs) [the one beside --receipts, if any]",
    )
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument(
        "--failed-out",
        type=Path,
        metavar="FILE",
        help="write failed numbers (to,api_msg_id,reason)",
    )
    report.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write a self-contained HTML page (charts, no network); receipts default to "
        "<results>.receipts.csv when it exists",
    )
    report.add_argument(
        "--text-file",
        type=Path,
        metavar="PATH",
        help="the campaign's text, shown in the HTML page's settings (the journal keeps only "
        "a fingerprint of it)",
    )

    bench_parser = sub.add_parser("bench", help="throughput benchmark against the simulator")
    from bulksend import bench

    bench.add_arguments(bench_parser)
    return parser


def _refuse_password_in_argv(argv: Sequence[str]) -> None:
    for arg in argv:
        if arg == "--api-key" or arg.startswith("--api-key="):
            raise ConfigError(
                "the One API key is never taken from the command line (other users can read it "
                "in the process list and shell history); set BULKSEND_API_KEY, or name a "
                "variable with api_key_env in the config file"
            )
        if arg == "--password" or arg.startswith("--password="):
            raise ConfigError(
                "the password is never taken from the command line (other users can read it in "
                "the process list and shell history); set BULKSEND_PASSWORD, or name a variable "
                "with password_env in the config file"
            )


def _refuse_if_held(results: Path) -> None:
    """Refuse a held campaign before the heavy imports (under a second): only a hint, the
    campaign takes the lock itself before anything is written."""
    from bulksend.lock import held_by, probe

    seen = probe(results)
    if seen.held:
        raise held_by(results, seen.holder)


def _cmd_send(args: argparse.Namespace) -> int:
    from bulksend.config import load_settings

    cli = {
        key: getattr(args, key, None)
        for key in [
            "api",
            "endpoint",
            "user",
            "api_id",
            "auth",
            "sender",
            "mo",
            "column",
            "out",
            "concurrency",
            "batch_size",
            "method",
            "rate",
            "unicode",
            "max_parts",
            "callback",
            "default_country",
            "strict",
            "dedupe",
            "resend_unknown",
            "restart",
            "again",
            "summary_json",
            "progress",
            "insecure",
            "dry_run",
            "receipts_listen",
            "text",
            "text_file",
            "data",
            "data_file",
            "udh",
            "flash",
            "deliver_in",
            "validity",
            "max_credits",
            "record_opt_outs",
            "allow_partial",
            "check_balance",
            "metrics_listen",
            "send_window",
            "send_days",
            "timezone_column",
            "default_timezone",
            "wait",
            "receipts_auth_user",
        ]
    }
    if args.opt_out_keywords is not None:
        cli["opt_out_keywords"] = tuple(args.opt_out_keywords.split(","))
    cli["input_path"] = args.file
    if args.exclude:
        cli["exclude"] = tuple(args.exclude)
    settings = load_settings(
        cli, config_path=args.config, profile=args.profile, prompt_password=True
    )
    if settings.api == "legacy" and not settings.dry_run and not settings.password:
        raise ConfigError("no password: set BULKSEND_PASSWORD, or password_env in the config file")
    if settings.method == "get" and not settings.dry_run:
        log.warning("--method get puts the credentials in the URL; prefer post")
    if not settings.dry_run:
        _refuse_if_held(settings.results_path)
    from bulksend.campaign import run_campaign
    from bulksend.progress import make_progress, print_summary

    progress = None if settings.dry_run else make_progress(settings.progress)
    # The modules and settings are loaded for good: keep them out of the collector's passes,
    # and collect the campaign's short-lived objects less often (pauses of the event loop
    # delay the gateway's answers; about 1 % more messages a second on the One API).
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    try:
        summary = run_campaign(settings, on_progress=progress)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if progress is not None:
            progress.close()
    print_summary(summary)
    if settings.summary_json is not None:
        try:
            settings.summary_json.write_text(summary.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            error = StorageError(str(settings.summary_json), exc)
            sys.stderr.write(f"bulksend: error: {error}\n")
            return EXIT_STORAGE
    if settings.receipts_listen and not settings.dry_run:
        from bulksend.receipts import receipts_path_for

        print(f"receipts: {receipts_path_for(settings.results_path)}")
    if summary.stopped and summary.exit_code:
        sys.stderr.write(f"bulksend: stopped: {summary.stopped}\n")
    return summary.exit_code


def _cmd_demo(args: argparse.Namespace) -> int:
    from bulksend.demo import run_demo

    return run_demo(
        recipients=args.recipients,
        directory=args.dir,
        progress=args.progress or "auto",
        latency=args.latency,
        jitter=args.jitter,
        concurrency=args.concurrency,
        api=args.api,
        personalised=args.personalised,
    )


def _cmd_receipts(args: argparse.Namespace) -> int:
    from bulksend.cli_compliance import run_receipts

    return run_receipts(args)


def _cmd_cancel(args: argparse.Namespace) -> int:
    from bulksend import aio
    from bulksend.cancel import cancel_campaign, print_cancel
    from bulksend.config import load_account

    cli = {
        key: getattr(args, key)
        for key in ("endpoint", "user", "api_id", "auth", "concurrency", "insecure")
    }
    account = load_account(cli, config_path=args.config, profile=args.profile, prompt_password=True)
    if account.api == "legacy" and not account.password:
        raise ConfigError("no password: set BULKSEND_PASSWORD, or password_env in the config file")
    summary = aio.run(cancel_campaign(args.results, account, force=args.force))
    if args.json:
        print(summary.to_json())
    else:
        print_cancel(summary)
    return summary.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    from bulksend.registry import default_state_dir
    from bulksend.status import campaign_status, known_runs, print_runs, print_status

    if args.results is None:
        runs = known_runs(default_state_dir())
        if args.json:
            print(json.dumps([asdict(r) for r in runs.runs], indent=2, sort_keys=True))
        else:
            print_runs(runs)
        return 0
    status = campaign_status(args.results, count_pending=args.pending)
    status.earlier_runs = known_runs(default_state_dir(), results=args.results).as_json()
    if args.json:
        print(status.to_json())
    else:
        print_status(status)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bulksend.report import build_report, print_report

    receipts = args.receipts
    if args.html is not None and receipts is None:
        from bulksend.receipts import receipts_path_for

        beside = receipts_path_for(args.results)
        receipts = beside if beside.exists() else None
    report = build_report(args.results, receipts, args.failed_out, args.replies)
    if args.html is not None:
        from bulksend.report_html import write_html_report

        text = None
        if args.text_file is not None:
            try:
                text = args.text_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--text-file {args.text_file}: {exc}") from None
        write_html_report(
            args.results,
            receipts,
            args.html,
            text=text,
            report=report,
            sections=replies_sections(report),
        )
        size = args.html.stat().st_size
        sys.stderr.write(f"bulksend: HTML report written to {args.html} ({size / 1024:,.0f} KB)\n")
    if args.json:
        print(report.to_json())
    else:
        print_report(report)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from bulksend.simulator import cli as sim_cli

    return sim_cli.run(args)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Before a campaign installs its own handler (start-up) and after it removed it: nothing is
    # in flight, so leave at once with the documented code.
    raise SystemExit(143)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    debug = "--debug" in argv
    _setup_logging(debug)
    try:
        command = next((a for a in argv if not a.startswith("-")), "")
        if command != "simulate":
            _refuse_password_in_argv(argv)
        args = build_parser().parse_args(argv)
        if args.command == "send":
            return _cmd_send(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "simulate":
            return _cmd_simulate(args)
        if args.command == "receipts":
            return _cmd_receipts(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "cancel":
            return _cmd_cancel(args)
        if args.command == "track":
            return run_track(args)
        if args.command == "bench":
            from bulksend import bench

            return bench.run(args)
        raise ConfigError(f"unknown command {args.command!r}")  # pragma: no cover
    except GatewayError as exc:
        sys.stderr.write(f"bulksend: error: {exc}\n")
        return 2
    except CampaignRepeated as exc:
        sys.stderr.write(f"bulksend: refused: {exc}\n")
        return EXIT_LOCKED
    except CampaignLocked as exc:
        sys.stderr.write(f"bulksend: refused: {exc}\n")
        return EXIT_LOCKED
    except StorageError as exc:
        sys.stderr.write(f"bulksend: error: {exc}; fix it, then rerun the same command to resume\n")
        return EXIT_STORAGE
    except (InputError, ConfigError, BulkSendError) as exc:
        sys.stderr.write(f"bulksend: error: {redact(str(exc))}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("bulksend: interrupted\n")
        return 130
    except OSError as exc:
        sys.stderr.write(f"bulksend: error: {redact(str(exc))}\n")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            log.exception("unexpected error")
        sys.stderr.write(
            f"bulksend: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(rerun with --debug for details; the journal is safe to resume)\n"
        )
        return 70
