"""``bulksend cancel RESULTS``: stop a scheduled campaign's messages that have not left yet.

For a campaign sent with ``--deliver-in``, every ``accepted`` row of the results file gets a
``delmsg`` for its API message ID, at ``--concurrency`` calls in flight. Each outcome is one line
of ``<results>.cancel.csv`` (``row,to,api_msg_id,outcome,status,error,at``), ``outcome`` being

* ``stopped``: the gateway stopped it (status 006, "user cancelled");
* ``not stopped``: it had already gone on (the status it reports instead: 003, 004, ...);
* ``failed``: the call failed or was refused (the reason in ``error``); a rerun tries again.

What it promises: it holds the campaign's lock while it runs (no ``send`` can start on the
campaign meanwhile, and it refuses to run beside one); rows already ``stopped`` or ``not stopped``
in the cancel file are skipped on a rerun, so an interrupted cancel resumes; every write failure is
a :class:`~bulksend.errors.StorageError`. A campaign without ``--deliver-in`` is refused (its
messages left at once) unless ``force``. The One API (``api = "one"``) has no ``delmsg``: a
cancel with it is refused.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bulksend.account import Account
from bulksend.client import ClientSettings
from bulksend.config import AccountSettings
from bulksend.errors import ConfigError, GatewayError, ProtocolError, StorageError, redact
from bulksend.journal import RESULTS_HEADER, utc_now
from bulksend.lock import FileLock
from bulksend.wire.legacy import Auth

__all__ = ["CANCEL_HEADER", "CancelSummary", "cancel_campaign", "cancel_path_for"]

log = logging.getLogger("bulksend.cancel")

CANCEL_HEADER = "row,to,api_msg_id,outcome,status,error,at"
STOPPED = "006"


def cancel_path_for(results: Path) -> Path:
    return results.with_name(results.name + ".cancel.csv")


@dataclass
class CancelSummary:
    results_path: str
    cancel_path: str
    accepted: int = 0
    skipped: int = 0  # settled by an earlier cancel run
    outcomes: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _scheduled(results: Path) -> bool:
    journal = results.with_name(results.name + ".journal")
    try:
        with journal.open(encoding="utf-8") as f:
            header = json.loads(f.readline() or "{}")
    except FileNotFoundError:
        raise ConfigError(f"{results} has no journal ({journal.name}): not a campaign") from None
    except ValueError:
        raise ConfigError(f"{journal} is not a bulksend journal") from None
    options = header.get("options") if isinstance(header, dict) else None
    return isinstance(options, dict) and bool(options.get("deliver_in"))


def _settled(path: Path) -> set[str]:
    """API message IDs an earlier cancel run already settled (stopped or not stopped)."""
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open(encoding="utf-8", newline="") as f:
        for line in csv.DictReader(f):
            if line.get("outcome") in ("stopped", "not stopped"):
                done.add(line.get("api_msg_id") or "")
    return done


def _field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


class _CancelFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            new = not path.exists() or path.stat().st_size == 0
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if new:
                os.write(self._fd, (CANCEL_HEADER + "\n").encode())
        except OSError as exc:
            raise StorageError(str(path), exc, "create") from None

    def write(self, row: str, to: str, api_id: str, outcome: str, status: str, error: str) -> None:
        line = f"{row},{to},{api_id},{outcome},{status},{_field(error)},{utc_now()}\n"
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:
            raise StorageError(str(self.path), exc) from None

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(str(self.path), exc, "fsync") from None
        finally:
            os.close(self._fd)


async def cancel_campaign(
    results: Path, account: AccountSettings, *, force: bool = False
) -> CancelSummary:
    """Stop every accepted message of the campaign that has not left (see the module doc)."""
    if account.api == "one":
        raise ConfigError(
            "bulksend cancel is not supported with the One API (api = 'one'): it has no call to "
            "stop a scheduled message (legacy delmsg); stop it in the Clickatell portal"
        )
    if not results.is_file():
        raise ConfigError(f"{results}: no such results file")
    with results.open(encoding="utf-8") as f:
        if f.readline().rstrip("\r\n") != RESULTS_HEADER:
            raise ConfigError(f"{results} is not a bulksend results file")
    if not _scheduled(results) and not force:
        raise ConfigError(
            f"{results} was not sent with --deliver-in: its messages left at once and cannot be "
            "stopped any more (pass --force to ask the gateway anyway)"
        )
    out = cancel_path_for(results)
    summary = CancelSummary(str(results), str(out))
    lock = FileLock(results, "cancel").acquire()
    try:
        settled = _settled(out)
        cancel_file = _CancelFile(out)
        client = ClientSettings(
            endpoint=account.endpoint,
            auth=Auth(api_id=account.api_id, user=account.user, password=account.password),
            use_session=account.auth == "session",
            concurrency=account.concurrency,
            connect_timeout=account.connect_timeout,
            read_timeout=account.read_timeout,
            verify_tls=not account.insecure,
        )
        outcomes: Counter[str] = Counter()
        queue: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue(
            maxsize=account.concurrency * 4
        )
        fatal: list[GatewayError] = []

        async def worker(calls: Account) -> None:
            while (item := await queue.get()) is not None:
                if fatal:
                    continue
                row, to, api_id = item
                try:
                    status = await calls.stop_message(api_id)
                except GatewayError as exc:
                    if exc.fatal and exc.code:
                        fatal.append(exc)
                    outcome, status, error = "failed", "", str(exc)
                except ProtocolError as exc:
                    outcome, status, error = "failed", "", str(exc)
                else:
                    outcome = "stopped" if status == STOPPED else "not stopped"
                    error = ""
                outcomes[outcome] += 1
                cancel_file.write(row, to, api_id, outcome, status, redact(error))

        try:
            async with Account(client) as calls:
                workers = [asyncio.create_task(worker(calls)) for _ in range(account.concurrency)]
                try:
                    with results.open(encoding="utf-8", newline="") as f:
                        for line in csv.DictReader(f):
                            if line.get("status") != "accepted" or not line.get("api_msg_id"):
                                continue
                            summary.accepted += 1
                            if line["api_msg_id"] in settled:
                                summary.skipped += 1
                                continue
                            if fatal:
                                break
                            await queue.put((line["row"], line["to"], line["api_msg_id"]))
                    for _ in workers:
                        await queue.put(None)
                    await asyncio.gather(*workers)
                except BaseException:
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    raise
        finally:
            cancel_file.close()
        summary.outcomes = dict(outcomes)
        if fatal:
            raise fatal[0]
        summary.exit_code = 2 if outcomes["failed"] else 0
        return summary
    finally:
        lock.release()


def print_cancel(summary: CancelSummary) -> None:
    o = summary.outcomes
    print(f"campaign          {summary.results_path}")
    print(f"accepted messages {summary.accepted:,}")
    if summary.skipped:
        print(f"settled before    {summary.skipped:,}")
    print(f"stopped           {o.get('stopped', 0):,}")
    print(f"already gone      {o.get('not stopped', 0):,}")
    print(
        f"failed            {o.get('failed', 0):,}"
        + (" (rerun to retry)" if o.get("failed") else "")
    )
    print(f"outcomes          {summary.cancel_path}")
