"""The campaign registry: which lists already went out, under which results file.

A campaign's journal lives beside its results file, so it protects that file only: the same list
and message sent with another ``--out`` (a cron job with dated names, a run from another
directory, a copy of the list) starts from nothing and texts everyone again. The registry closes
that gap. It is one small JSON file, ``campaigns.json``, in the user's state directory
(:func:`default_state_dir`: ``$BULKSEND_STATE_DIR``, else ``$XDG_STATE_HOME/bulksend``, else
``~/.local/state/bulksend``), holding one :class:`RunEntry` per campaign run:

* the campaign's **identity** (:func:`campaign_identity`): the input's content digest (SHA-256,
  so a copy or a moved file is the same list) and the column read from it, the message (text or
  template and every message option, as the journal fingerprints it), the sender, and the account
  (endpoint plus user and API id, or a fingerprint of the One API key: never a secret);
* the results file it went to (real path), when it ran, and what it holds (rows accepted, rejected,
  unknown; or ``running`` for a run that has not finished, or died).

What it promises (:meth:`Registry.admit`, called by a campaign after it holds its lock and before
anything is sent):

* a campaign with the identity of an earlier one that may have texted anyone, under **another**
  results file, is refused with :class:`~bulksend.errors.CampaignRepeated` (exit 3, nothing sent)
  naming the earlier results file, when it ran and what it holds; with ``again`` it is sent
  anyway, the warning says so and the new entry records it;
* the **same** results file is a resume (or a ``--restart``, which asks for a new campaign
  explicitly): never refused here, even when the campaign also went out under other names (a
  run with ``again``); so is a results file the registry never saw that already holds the
  campaign (begun before the registry, or with another state directory);
* an earlier run recorded as having sent nothing (stopped by the credit check, a refused login)
  does not count;
* **two runs at once** meet at an exclusive ``flock`` on ``campaigns.json.lock``: the check and the
  new entry are one step, so the second of two simultaneous runs sees the first;
* every write is durable before the run goes on: temporary file, ``fsync``, ``rename``, ``fsync``
  of the directory, so a machine crash leaves the old registry or the new one, never a mix;
* a registry that exists but cannot be read (permissions, damaged) **refuses** the run (exit 3)
  naming the path, since it might hold the very campaign: fix or move the file, or pass ``again``
  (then the run goes on without the check, and a warning says it was not recorded); a state
  directory that cannot be created or written **warns** naming the path and goes on: every entry
  it holds was still checked, only this run cannot be recorded for later ones.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bulksend.errors import CampaignRepeated

__all__ = [
    "REGISTRY_NAME",
    "Admission",
    "CampaignIdentity",
    "Registry",
    "RegistryUnavailable",
    "RunEntry",
    "campaign_identity",
    "default_state_dir",
    "key_fingerprint",
    "repeats_of",
]

REGISTRY_NAME = "campaigns.json"
REGISTRY_VERSION = 1
MAX_ENTRIES = 20_000
"""Oldest entries beyond this are dropped (a daily cron job fills it in 50 years)."""
LOCK_SECONDS = 10.0
FILE_MODE = 0o600


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$BULKSEND_STATE_DIR``, else ``$XDG_STATE_HOME/bulksend``, else ``~/.local/state/bulksend``."""
    env = os.environ if env is None else env
    if env.get("BULKSEND_STATE_DIR"):
        return Path(env["BULKSEND_STATE_DIR"]).expanduser()
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]).expanduser() / "bulksend"
    return Path("~/.local/state/bulksend").expanduser()


def key_fingerprint(api_key: str) -> str:
    """A short, one-way fingerprint of a One API key: tells keys apart, never reveals one."""
    digest = hashlib.sha256(b"bulksend registry key fingerprint\0" + api_key.encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True, slots=True)
class CampaignIdentity:
    """What makes two runs the same campaign, whatever their results file is called."""

    digest: str  # SHA-256 of the parts below
    input_sha256: str
    account: str  # for people: ``legacy user@endpoint (api id N)`` or ``one key ab12.. @ endpoint``


def campaign_identity(
    *,
    input_sha256: str,
    column: str | int | None,
    message: str,
    sender: str | None,
    api: str,
    endpoint: str,
    user: str = "",
    api_id: str = "",
    api_key: str = "",
) -> CampaignIdentity:
    """The identity of a campaign. ``message`` is the journal's fingerprint of the text (or
    template) and its options; ``api_key`` only enters as :func:`key_fingerprint`."""
    endpoint = endpoint.rstrip("/")
    if api == "one":
        account = {"api": "one", "endpoint": endpoint, "key": key_fingerprint(api_key)}
        label = f"One API key {account['key']} at {endpoint}"
    else:
        account = {"api": api, "endpoint": endpoint, "user": user, "api_id": api_id}
        label = f"user {user or '-'} (api id {api_id or '-'}) at {endpoint}"
    blob = json.dumps(
        {
            "input_sha256": input_sha256,
            "column": column,
            "message": message,
            "sender": sender or "",
            "account": account,
        },
        sort_keys=True,
        ensure_ascii=True,
    )
    return CampaignIdentity(hashlib.sha256(blob.encode()).hexdigest(), input_sha256, label)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One campaign run the registry knows of."""

    identity: str
    results: str  # real path of the results file
    input: str
    account: str
    sender: str = ""
    started: str = ""
    updated: str = ""
    state: str = "running"  # running (or died), finished, stopped
    pid: int = 0
    host: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # accepted, rejected, unknown, pending
    again: bool = False  # sent although an earlier run had sent the same campaign

    @property
    def may_have_sent(self) -> bool:
        """False only for a run that ended having texted no one."""
        if self.state == "running":
            return True
        return any(self.counts.get(k, 0) for k in ("accepted", "unknown", "rejected"))

    def holds(self) -> str:
        """What the run recorded, in words."""
        if self.state == "running":
            return (
                f"started {self.started} by pid {self.pid} on {self.host or '?'} and not "
                "recorded as finished (still running, or it died)"
            )
        c = self.counts
        parts = [f"{c.get(k, 0):,} {k}" for k in ("accepted", "rejected", "unknown")]
        if c.get("pending"):
            parts.append(f"{c['pending']:,} pending")
        return f"{self.state} {self.updated}: " + ", ".join(parts)

    @classmethod
    def from_json(cls, data: object) -> RunEntry | None:
        if not isinstance(data, dict):
            return None
        try:
            counts = data.get("counts") or {}
            return cls(
                identity=str(data["identity"]),
                results=str(data["results"]),
                input=str(data.get("input", "")),
                account=str(data.get("account", "")),
                sender=str(data.get("sender", "")),
                started=str(data.get("started", "")),
                updated=str(data.get("updated", "")),
                state=str(data.get("state", "running")),
                pid=int(data.get("pid", 0)),
                host=str(data.get("host", "")),
                counts={str(k): int(v) for k, v in dict(counts).items()},
                again=bool(data.get("again", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def repeats_of(entries: list[RunEntry], identity: str, results: str) -> list[RunEntry]:
    """Earlier runs of the same campaign under another results file that may have texted
    anyone, newest first (pure: the decision :meth:`Registry.admit` makes)."""
    found = [e for e in entries if e.identity == identity and e.results != results]
    return sorted((e for e in found if e.may_have_sent), key=lambda e: e.started, reverse=True)


def refusal(entry: RunEntry, others: int, input_path: str) -> str:
    """The message of a refused repeat (the newest earlier run; ``others`` more)."""
    try:
        present = os.path.exists(entry.results)
    except OSError:
        present = False
    gone = not present and entry.state != "running"  # a run starting now has no file yet
    where = f"{entry.results} (no longer there)" if gone else entry.results
    more = f" (and {others} earlier run(s))" if others else ""
    return (
        f"this list and message already went out from this account: {input_path} was sent on "
        f"{entry.started} with results in {where}{more}; that run {entry.holds()}. Nothing was "
        f"sent. To resume that campaign, rerun with --out {entry.results}; to send everyone the "
        "same message again, pass --again"
    )


class RegistryUnavailable(Exception):
    """The registry file or its directory cannot be used (the message names the path)."""

    def __init__(self, message: str, *, readable: bool) -> None:
        super().__init__(message)
        self.readable = readable  # False: entries may exist that could not be checked


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`Registry.admit` decided."""

    entry: RunEntry  # this run's entry
    repeats: tuple[RunEntry, ...] = ()  # earlier runs sent again (``again``)
    warning: str = ""  # the registry could not record this run (or was not checked)
    recorded: bool = True
    previous: RunEntry | None = None  # the entry this run replaced (an earlier run of its file)


class Registry:
    """The registry file in ``directory``. Every method takes the lock for its whole step."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / REGISTRY_NAME
        self.lock_path = self.directory / (REGISTRY_NAME + ".lock")

    # -- reading -----------------------------------------------------------------------------------

    def _read(self) -> list[RunEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot read the campaign registry {self.path}: {exc.strerror or exc}",
                readable=False,
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            rows = data["campaigns"]
            if not isinstance(rows, list):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise RegistryUnavailable(
                f"the campaign registry {self.path} is damaged (not the JSON bulksend writes)",
                readable=False,
            ) from None
        return [e for e in map(RunEntry.from_json, rows) if e is not None]

    def runs(self) -> list[RunEntry]:
        """Every run known, newest first (for ``bulksend status``); raises
        :class:`RegistryUnavailable`. Reads under a shared lock when it can take one."""
        if not self.path.exists():
            return []
        with self._locked(shared=True, create=False):
            entries = self._read()
        return sorted(entries, key=lambda e: e.started, reverse=True)

    # -- writing -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, shared: bool = False, create: bool = True) -> Iterator[None]:
        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise RegistryUnavailable(
                    f"cannot create the state directory {self.directory}: {exc.strerror or exc}",
                    readable=True,
                ) from None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | (os.O_CREAT if create else 0), FILE_MODE)
        except FileNotFoundError:
            if create:
                raise RegistryUnavailable(
                    f"cannot create the state directory {self.directory}", readable=True
                ) from None
            yield  # nobody ever wrote a lock there: an unlocked read is all there is
            return
        except OSError:
            # A state directory this user cannot write (read-only, permissions) can still be
            # read and checked; writing the registry then fails and says so.
            yield
            return
        try:
            deadline = time.monotonic() + LOCK_SECONDS
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise RegistryUnavailable(
                            f"the campaign registry {self.path} stayed locked for "
                            f"{LOCK_SECONDS:.0f} s",
                            readable=False,
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def _write(self, entries: list[RunEntry]) -> None:
        """Replace the registry durably: temporary file, fsync, rename, fsync the directory."""
        entries = sorted(entries, key=lambda e: e.started)[-MAX_ENTRIES:]
        body = json.dumps(
            {"bulksend_registry": REGISTRY_VERSION, "campaigns": [asdict(e) for e in entries]},
            indent=1,
            sort_keys=True,
        ).encode("utf-8")
        tmp = self.path.with_name(f"{REGISTRY_NAME}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise RegistryUnavailable(
                f"cannot write the campaign registry {self.path}: {exc.strerror or exc}",
                readable=True,
            ) from None

    def admit(
        self,
        identity: CampaignIdentity,
        *,
        results: str,
        input_path: str,
        sender: str = "",
        again: bool = False,
        resuming: bool = False,
    ) -> Admission:
        """Check this run against the earlier ones and record it (see the module docstring).

        ``resuming``: ``results`` already holds this campaign (its journal is there): a resume,
        whatever other results files the same campaign went to. Raises
        :class:`~bulksend.errors.CampaignRepeated` for a repeat (or an unreadable registry)
        without ``again``; otherwise returns this run's entry and what was noticed."""
        results = os.path.realpath(results)
        now = _now()
        entry = RunEntry(
            identity=identity.digest,
            results=results,
            input=os.path.realpath(input_path),
            account=identity.account,
            sender=sender,
            started=now,
            updated=now,
            pid=os.getpid(),
            host=socket.gethostname(),
            again=again,
        )
        try:
            with self._locked():
                entries = self._read()
                earlier = [
                    e for e in entries if (e.identity, e.results) == (entry.identity, results)
                ]
                # This campaign's own results file (known here, or one the registry never saw:
                # a campaign begun before it, or under another state directory) is a resume.
                repeats = (
                    [] if earlier or resuming else repeats_of(entries, entry.identity, results)
                )
                if repeats and not again:
                    raise CampaignRepeated(
                        refusal(repeats[0], len(repeats) - 1, input_path),
                        results=repeats[0].results,
                    )
                kept = [e for e in entries if (e.identity, e.results) != (entry.identity, results)]
                if earlier:  # a resume keeps when the campaign first ran
                    entry = replace(
                        entry, started=earlier[0].started, again=earlier[0].again or again
                    )
                self._write([*kept, entry])
                return Admission(entry, tuple(repeats), previous=earlier[0] if earlier else None)
        except RegistryUnavailable as exc:
            if not exc.readable and not again:
                raise CampaignRepeated(
                    f"{exc}, so bulksend cannot tell whether this list already went out under "
                    "another results file. Nothing was sent. Fix or move that file, or pass "
                    "--again to send without the check",
                    results="",
                ) from None
            what = "was not checked and " if not exc.readable else ""
            return Admission(
                entry,
                warning=(
                    f"{exc}; this campaign {what}is not recorded, so a later run of the same list "
                    "under another results file will not be caught"
                ),
                recorded=False,
            )

    def withdraw(self, admission: Admission) -> None:
        """The run stopped before it could send anything (refused by its journal, a bad input):
        put back what the registry held before it (raises :class:`RegistryUnavailable`)."""
        if not admission.recorded:
            return
        entry = admission.entry
        with self._locked():
            entries = [
                e
                for e in self._read()
                if (e.identity, e.results) != (entry.identity, entry.results)
            ]
            if admission.previous is not None:
                entries.append(admission.previous)
            self._write(entries)

    def finish(self, entry: RunEntry, *, state: str, counts: Mapping[str, int]) -> None:
        """Record what the run left (raises :class:`RegistryUnavailable`)."""
        with self._locked():
            entries = self._read()
            key = (entry.identity, entry.results)
            done = replace(entry, state=state, updated=_now(), counts=dict(counts))
            self._write([e for e in entries if (e.identity, e.results) != key] + [done])
