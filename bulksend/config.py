"""Settings: TOML profiles + ``BULKSEND_*`` environment + command line -> one frozen object.

Precedence, highest first: command line, environment, the chosen config profile, the file's
top-level keys, built-in defaults. The core never reads the environment or files itself: everything
it needs is in :class:`CampaignSettings`, built here at the edge.

The password is never taken from the command line. It comes from ``BULKSEND_PASSWORD``, from the
environment variable a profile names in ``password_env`` (preferred in files), from ``password`` in
the config file (a warning if the file is readable by others), or from an interactive prompt. Every
secret is registered for redaction as soon as it is read.

``api`` picks the wire protocol: ``legacy`` (the Clickatell HTTP API: user, password, api_id) or
``one`` (the One API: an API key, https://platform.clickatell.com, at most 100 messages a request).
The One API key follows the password's rules: ``BULKSEND_API_KEY``, the variable a profile names in
``api_key_env`` (preferred), or ``api_key`` in the file (the same warning); never the command line.
With ``legacy`` no key is read.

Quiet hours (:mod:`bulksend.window`): ``send_window`` (``HH:MM-HH:MM``), ``send_days``,
``timezone_column``, ``default_timezone`` and ``wait`` may come from a profile like any setting;
they are validated here, so a typo fails before anything is read or sent. ``clock``
(:mod:`bulksend.clock`, the wall clock by default) is the campaign's notion of now and of waiting
for the windows: tests and library users drive it; it is not a file or command-line setting.

A receiver run alongside the campaign (``receipts_listen``) on an address other than loopback
needs ``BULKSEND_RECEIPTS_TOKEN`` or basic auth (``receipts_auth_user`` and
``BULKSEND_RECEIPTS_PASSWORD``); both secrets come from the environment only.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from bulksend.clock import SYSTEM_CLOCK, Clock
from bulksend.errors import ConfigError, InputError, register_secret
from bulksend.registry import default_state_dir

__all__ = [
    "DEFAULT_ENDPOINT",
    "ONE_API_ENDPOINT",
    "AccountSettings",
    "CampaignSettings",
    "load_account",
    "load_settings",
]

DEFAULT_ENDPOINT = "https://api.clickatell.com"
ONE_API_ENDPOINT = "https://platform.clickatell.com"
ONE_API_MAX_BATCH = 200  # bulksend.wire.one.MAX_BATCH (not imported: keeps `send` start-up light)
APIS = ("legacy", "one")

# Keys a config file (top level or a [profile.NAME] table) may hold, with their types.
_KEYS: dict[str, type | tuple[type, ...]] = {
    "api": str,
    "api_key": str,
    "api_key_env": str,
    "endpoint": str,
    "user": str,
    "api_id": (str, int),
    "password": str,
    "password_env": str,
    "auth": str,
    "from": (str, int),
    "mo": bool,
    "column": (str, int),
    "concurrency": int,
    "batch_size": int,
    "method": str,
    "rate": (int, float),
    "unicode": str,
    "max_parts": int,
    "callback": int,
    "default_country": str,
    "strict": bool,
    "dedupe": bool,
    "flash": bool,
    "validity": int,
    "max_credits": (int, float),
    "exclude": list,
    "record_opt_outs": str,
    "allow_partial": bool,
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
    "retry_attempts": int,
    "retry_max_seconds": (int, float),
    "fsync_interval": (int, float),
    "insecure": bool,
    "send_window": str,
    "send_days": str,
    "timezone_column": (str, int),
    "default_timezone": str,
    "wait": bool,
    "receipts_auth_user": str,
    "opt_out_keywords": list,
    "state_dir": str,
}

_ENV = {
    "BULKSEND_API": "api",
    "BULKSEND_ENDPOINT": "endpoint",
    "BULKSEND_USER": "user",
    "BULKSEND_API_ID": "api_id",
    "BULKSEND_FROM": "sender",
    "BULKSEND_CONCURRENCY": "concurrency",
    "BULKSEND_RATE": "rate",
    "BULKSEND_AUTH": "auth",
    "BULKSEND_RECEIPTS_TOKEN": "receipts_token",
    "BULKSEND_STATE_DIR": "state_dir",
}


@dataclass(frozen=True)
class CampaignSettings:
    """Everything a campaign needs; built by :func:`load_settings` or directly by library users."""

    input_path: Path
    text: str
    api: Literal["legacy", "one"] = "legacy"
    api_key: str = field(default="", repr=False)
    """The One API key (``api = "one"``); never printed."""
    endpoint: str = ""
    """Gateway base URL; empty means the API's own (:data:`DEFAULT_ENDPOINT`, :data:`ONE_API_ENDPOINT`)."""
    user: str = ""
    api_id: str = ""
    password: str = field(default="", repr=False)
    auth: Literal["password", "session"] = "password"
    sender: str | None = None
    mo: bool = False
    out: Path | None = None
    column: str | int | None = None
    concurrency: int = 32
    batch_size: int | None = None
    method: Literal["post", "get"] = "post"
    rate: float | None = None
    unicode: Literal["auto", "on", "off"] = "auto"
    max_parts: int = 3
    callback: int = 0
    default_country: str | None = None
    strict: bool = False
    dedupe: bool = True
    resend_unknown: bool = False
    restart: bool = False
    dry_run: bool = False
    summary_json: Path | None = None
    progress: Literal["auto", "on", "off"] = "auto"
    insecure: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry_attempts: int = 8
    retry_max_seconds: float = 300.0
    fsync_interval: float = 1.0
    install_signal_handlers: bool = True
    reader: Literal["auto", "process", "inline"] = "auto"
    receipts_listen: str | None = None
    """``HOST:PORT``: run a delivery-receipt receiver alongside the campaign."""
    # Message options (part of the campaign's identity: a resume with others is refused).
    flash: bool = False
    udh: str | None = None  # binary message: hex
    data: str | None = None  # binary message: hex, instead of text
    deliver_in: int | None = None  # minutes (deliv_time)
    validity: int | None = None  # minutes
    max_credits: float | None = None
    # Audience and pre-flight.
    exclude: tuple[Path, ...] = ()
    record_opt_outs: Path | None = None
    allow_partial: bool = False
    check_balance: bool = True
    metrics_listen: str | None = None
    """``HOST:PORT``: serve Prometheus metrics at ``/metrics`` while the campaign runs."""
    # The receiver alongside the campaign: credentials, and what opts a recipient out.
    receipts_token: str | None = field(default=None, repr=False)
    """Callbacks only at ``/TOKEN`` (``BULKSEND_RECEIPTS_TOKEN``); never printed."""
    receipts_auth_user: str | None = None
    receipts_password: str = field(default="", repr=False)
    """Basic-auth password of the receiver (``BULKSEND_RECEIPTS_PASSWORD``); never printed."""
    opt_out_keywords: tuple[str, ...] | None = None
    """Replies starting with one of these opt out (None: :data:`bulksend.replies.
    DEFAULT_OPT_OUT_KEYWORDS`); with ``record_opt_outs`` their numbers go to that list."""
    # Quiet hours.
    send_window: str | None = None
    """``HH:MM-HH:MM`` in each recipient's local time (None: any time)."""
    send_days: str | None = None
    """``Mon-Fri``...: the days the window opens on (None: every day)."""
    timezone_column: str | int | None = None
    """A column of IANA zone names that overrides the numbering plan's zone."""
    default_timezone: str = "UTC"
    """The zone of numbers the plan cannot place (:data:`bulksend.window.DEFAULT_TIMEZONE`)."""
    wait: bool = False
    """Stay up and send each deferred group as its window opens (else exit 0 and rerun)."""
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)
    """Now and waiting, for the send window (:mod:`bulksend.clock`; tests drive it)."""

    # The campaign registry (bulksend.registry): same list and message under another results file.
    state_dir: Path | None = field(default_factory=default_state_dir)
    """Where the registry lives (``$BULKSEND_STATE_DIR``, ``$XDG_STATE_HOME/bulksend``,
    ``~/.local/state/bulksend``); ``None``: no registry (the caller keeps its own books)."""
    again: bool = False
    """Send although the registry knows the same campaign under another results file (CLI only:
    a config file that said so would switch the check off for good)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_path", Path(self.input_path))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser())
        self._check_window()
        self._check_receiver()
        object.__setattr__(self, "exclude", tuple(Path(p) for p in self.exclude))
        if self.record_opt_outs is not None:
            object.__setattr__(self, "record_opt_outs", Path(self.record_opt_outs))
        if self.data is None and self.udh is not None:
            raise ConfigError("--udh needs --data (a binary message)")
        if self.data is not None and self.text:
            raise ConfigError("a binary message (--data) has no --text")
        if self.data is not None and self.flash:
            raise ConfigError("--flash is for text messages, not binary ones (--data)")
        if self.deliver_in is not None and not 0 <= self.deliver_in <= 10080:
            raise ConfigError(
                f"--deliver-in must be 0..10080 minutes (7 days), not {self.deliver_in}"
            )
        if self.validity is not None and not 1 <= self.validity <= 10080:
            raise ConfigError(f"--validity must be 1..10080 minutes, not {self.validity}")
        if self.max_credits is not None and self.max_credits <= 0:
            raise ConfigError(f"--max-credits must be positive, not {self.max_credits}")
        if self.password:
            register_secret(self.password)
        _check_api(self.api, self.api_key, self.auth, required=not self.dry_run)
        if self.api == "legacy":
            object.__setattr__(self, "api_key", "")  # ignored: never carried into a legacy run
        if not self.endpoint:
            object.__setattr__(self, "endpoint", _default_endpoint(self.api))
        if self.api == "one" and self.method == "get":
            raise ConfigError("--method get is for the legacy API; the One API posts JSON")
        if self.api == "one":
            legacy_only = [
                name
                for name, chosen in (
                    ("--flash", self.flash),
                    ("--deliver-in", self.deliver_in is not None),
                    ("--max-credits", self.max_credits is not None),
                    ("--mo", self.mo),
                )
                if chosen
            ]
            if legacy_only:
                raise ConfigError(
                    f"{', '.join(legacy_only)}: legacy API options the One API does not offer "
                    "(delivery callbacks are set on the One API integration, not per message)"
                )
        if self.method not in ("post", "get"):
            raise ConfigError(f"--method must be post or get, not {self.method!r}")
        if self.auth not in ("password", "session"):
            raise ConfigError(f"auth must be 'password' or 'session', not {self.auth!r}")
        if self.unicode not in ("auto", "on", "off"):
            raise ConfigError(f"--unicode must be auto, on or off, not {self.unicode!r}")
        limit = 300 if self.method == "get" else 600
        if self.api == "one" and self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {self.batch_size}")
        if (
            self.api == "legacy"
            and self.batch_size is not None
            and not 1 <= self.batch_size <= limit
        ):
            raise ConfigError(
                f"--batch-size must be 1..{limit} with --method {self.method}, not {self.batch_size}"
            )
        if self.concurrency < 1 or self.concurrency > 1024:
            raise ConfigError(f"--concurrency must be 1..1024, not {self.concurrency}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate must be positive, not {self.rate}")
        if not 1 <= self.max_parts <= 10:
            raise ConfigError(f"--max-parts must be 1..10, not {self.max_parts}")
        if not 0 <= self.callback <= 7:
            raise ConfigError(f"--callback must be 0..7, not {self.callback}")
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint must be an http(s) URL, not {self.endpoint!r}")

    def _check_window(self) -> None:
        if self.send_window is None:
            for name, given in (
                ("--send-days", self.send_days is not None),
                ("--timezone-column", self.timezone_column is not None),
                ("--wait", self.wait),
            ):
                if given:
                    raise ConfigError(f"{name} needs --send-window HH:MM-HH:MM")
            return
        from bulksend.window import SendWindow, zone

        SendWindow.parse(self.send_window, self.send_days)  # ConfigError if malformed
        zone(self.default_timezone)
        if self.deliver_in is not None:
            raise ConfigError(
                "--deliver-in and --send-window exclude each other: a delayed message could "
                "arrive outside the recipient's window"
            )

    @property
    def window(self) -> Any:
        """The :class:`~bulksend.window.SendWindow`, or None without ``send_window``."""
        if self.send_window is None:
            return None
        from bulksend.window import SendWindow

        return SendWindow.parse(self.send_window, self.send_days)

    def _check_receiver(self) -> None:
        if self.receipts_token:
            register_secret(self.receipts_token)
        if self.receipts_password:
            register_secret(self.receipts_password)
        if self.receipts_auth_user and not self.receipts_password:
            raise ConfigError("receipts_auth_user needs the password in BULKSEND_RECEIPTS_PASSWORD")
        if self.opt_out_keywords is not None:
            object.__setattr__(self, "opt_out_keywords", tuple(self.opt_out_keywords))
            from bulksend.replies import OptOutKeywords

            try:
                OptOutKeywords(self.opt_out_keywords)
            except ValueError as exc:
                raise ConfigError(f"opt_out_keywords: {exc}") from None
        if self.receipts_listen and not self.dry_run:
            from bulksend.listen import parse_listen, require_credentials

            host, _ = parse_listen(self.receipts_listen)
            require_credentials(host, self.receipts_token, self.receipts_basic_auth)

    @property
    def receipts_basic_auth(self) -> tuple[str, str] | None:
        if not self.receipts_auth_user:
            return None
        return self.receipts_auth_user, self.receipts_password

    @property
    def effective_batch_size(self) -> int:
        """Recipients per request: the requested size within the API's limit (One API: 200)."""
        if self.api == "one":
            return min(self.batch_size or ONE_API_MAX_BATCH, ONE_API_MAX_BATCH)
        if self.batch_size is not None:
            return self.batch_size
        return 300 if self.method == "get" else 600

    @property
    def results_path(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return self.input_path.with_name(self.input_path.stem + ".results.csv")

    @property
    def rejects_path(self) -> Path:
        results = self.results_path
        name = results.name
        if name.endswith(".results.csv"):
            return results.with_name(name[: -len(".results.csv")] + ".rejects.csv")
        return results.with_name(results.stem + ".rejects.csv")

    def __repr__(self) -> str:
        return _masked_repr(self)


_SECRET_FIELDS = ("password", "api_key", "receipts_token", "receipts_password", "clock")


def _masked_repr(settings: CampaignSettings | AccountSettings) -> str:
    shown = ", ".join(
        f"{f.name}={getattr(settings, f.name)!r}"
        for f in fields(settings)
        if f.name not in _SECRET_FIELDS
    )
    return f"{type(settings).__name__}({shown}, password=***, api_key=***)"


def _default_endpoint(api: str) -> str:
    return ONE_API_ENDPOINT if api == "one" else DEFAULT_ENDPOINT


def _check_api(api: str, api_key: str, auth: str, *, required: bool) -> None:
    """The One API's needs: a valid key (unless nothing will be sent), no legacy-only settings.
    The key is validated by :class:`bulksend.wire.one.ApiKey`, which never quotes it."""
    if api_key:
        register_secret(api_key)
    if api not in APIS:
        raise ConfigError(f"api must be 'legacy' or 'one', not {api!r}")
    if api != "one":
        return
    if auth == "session":
        raise ConfigError(
            "auth = 'session' is for the legacy API; the One API sends its key on every request"
        )
    if api_key:
        from bulksend.wire.one import ApiKey

        ApiKey(api_key)
    elif required:
        raise ConfigError(
            "no One API key: set BULKSEND_API_KEY, or name a variable with api_key_env in the "
            "config file"
        )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _check_keys(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "profile":
            continue
        expected = _KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{where}: unknown key {key!r} (see config/bulksend.example.toml)")
        if not isinstance(value, expected) or (
            isinstance(value, bool) and expected in (int, float)
        ):
            raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        out[key] = value
    return out


def _profile_values(path: Path, profile: str | None) -> tuple[dict[str, Any], bool]:
    """Top-level keys overlaid with ``[profile.NAME]``; also says whether a secret (password,
    API key) is in it."""
    data = _read_config(path)
    values = _check_keys(data, str(path))
    profiles = data.get("profile", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profile] must be a table of profiles")
    if profile is not None:
        chosen = profiles.get(profile)
        if not isinstance(chosen, dict):
            names = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"{path}: no profile {profile!r} (profiles: {names})")
        values.update(_check_keys(chosen, f"{path} [profile.{profile}]"))
    has_secret = "password" in values or "api_key" in values
    return values, has_secret


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"{path} holds a password or API key and other users can read it; "
            f"run 'chmod 600 {path}' or use password_env / api_key_env instead",
            stacklevel=3,
        )


_COERCE: dict[str, Any] = {
    "concurrency": int,
    "batch_size": int,
    "rate": float,
    "max_parts": int,
    "callback": int,
    "connect_timeout": float,
    "read_timeout": float,
    "retry_attempts": int,
    "retry_max_seconds": float,
    "fsync_interval": float,
    "validity": int,
    "max_credits": float,
    "deliver_in": int,
}


def _read_text_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path=f"{what} {path}") from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=f"{what} {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=f"{what} {path}") from None


def _message_from_files(merged: dict[str, Any]) -> None:
    """``text_file`` -> ``text`` (UTF-8, one final line end dropped); ``data_file`` -> ``data``."""
    text_file = merged.pop("text_file", None)
    if text_file is not None:
        if merged.get("text"):
            raise ConfigError("--text and --text-file exclude each other: give one")
        raw = _read_text_file(Path(text_file), "--text-file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not UTF-8 (byte {exc.start + 1})", path=f"--text-file {text_file}"
            ) from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise InputError("is empty", path=f"--text-file {text_file}")
        merged["text"] = text
    data_file = merged.pop("data_file", None)
    if data_file is not None:
        if merged.get("data"):
            raise ConfigError("--data and --data-file exclude each other: give one")
        merged["data"] = _read_text_file(Path(data_file), "--data-file").hex().upper()


def load_settings(
    cli: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    prompt_password: bool = False,
) -> CampaignSettings:
    """Merge the sources into :class:`CampaignSettings`.

    ``cli`` holds the command-line values that were given (``None`` means not given), under the
    field names of :class:`CampaignSettings` (``from`` is ``sender``).
    """
    merged, password, api_key = _merge(cli, env, config_path, profile, prompt_password)
    _message_from_files(merged)
    if "input_path" not in merged or ("text" not in merged and "data" not in merged):
        raise ConfigError("a campaign needs an input file and --text (or --text-file, --data)")
    merged.setdefault("text", "")
    if isinstance(merged.get("exclude"), list):
        merged["exclude"] = tuple(Path(str(p)) for p in merged["exclude"])
    if isinstance(merged.get("opt_out_keywords"), list):
        merged["opt_out_keywords"] = tuple(str(k) for k in merged["opt_out_keywords"])
    receipts_password = (env if env is not None else os.environ).get("BULKSEND_RECEIPTS_PASSWORD")
    if receipts_password:
        merged["receipts_password"] = receipts_password
    known = {f.name for f in fields(CampaignSettings)}
    unknown = set(merged) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    merged.setdefault("state_dir", default_state_dir(os.environ if env is None else env))
    settings = CampaignSettings(password=password, api_key=api_key, **merged)
    if settings.insecure:
        warnings.warn("TLS certificate verification is OFF (--insecure)", stacklevel=2)
    return settings


@dataclass(frozen=True)
class AccountSettings:
    """What a call to the account needs (``bulksend cancel``): endpoint and credentials."""

    api: Literal["legacy", "one"] = "legacy"
    api_key: str = field(default="", repr=False)
    endpoint: str = ""
    user: str = ""
    api_id: str = ""
    password: str = field(default="", repr=False)
    auth: Literal["password", "session"] = "password"
    concurrency: int = 32
    insecure: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_api(self.api, self.api_key, self.auth, required=False)
        if not self.endpoint:
            object.__setattr__(self, "endpoint", _default_endpoint(self.api))

    def __repr__(self) -> str:
        return _masked_repr(self)


def load_account(
    cli: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    prompt_password: bool = False,
) -> AccountSettings:
    """The account part of the settings, with the same sources and precedence as a campaign."""
    merged, password, api_key = _merge(cli, env, config_path, profile, prompt_password)
    known = {f.name for f in fields(AccountSettings)}
    settings = AccountSettings(
        password=password, api_key=api_key, **{k: v for k, v in merged.items() if k in known}
    )
    if not settings.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint must be an http(s) URL, not {settings.endpoint!r}")
    return settings


def _merge(
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None,
    config_path: str | os.PathLike[str] | None,
    profile: str | None,
    prompt_password: bool,
) -> tuple[dict[str, Any], str, str]:
    """The merged settings without secrets, the password and the One API key (each "" when not
    set; only the one the chosen API uses is read)."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = config_path or env.get("BULKSEND_CONFIG") or None
    password_env: str | None = None
    api_key_env: str | None = None
    file_api_key = ""
    if path is not None:
        values, has_secret = _profile_values(Path(path), profile or env.get("BULKSEND_PROFILE"))
        if has_secret:
            _warn_if_readable(Path(path))
        password_env = values.pop("password_env", None)
        api_key_env = values.pop("api_key_env", None)
        file_api_key = values.pop("api_key", "")
        if "from" in values:
            values["sender"] = values.pop("from")
        merged.update(values)
    elif profile is not None:
        raise ConfigError("--profile needs --config PATH (or BULKSEND_CONFIG)")

    for var, key in _ENV.items():
        if env.get(var):
            merged[key] = env[var]
    for key, value in cli.items():
        if value is not None:
            merged[key] = value

    if merged.get("sender") is not None:
        merged["sender"] = str(merged["sender"])
    if "api_id" in merged:
        merged["api_id"] = str(merged["api_id"])
    for key, convert in _COERCE.items():
        if key in merged and merged[key] is not None:
            try:
                merged[key] = convert(merged[key])
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a number, not {merged[key]!r}") from None

    if merged.get("api", "legacy") == "one":
        merged.pop("password", None)
        return merged, "", _api_key(env, api_key_env, file_api_key)
    password = env.get("BULKSEND_PASSWORD") or ""
    if not password and password_env:
        password = env.get(password_env, "")
        if not password:
            raise ConfigError(
                f"the config names password_env = {password_env!r} but that variable is not set"
            )
    if not password:
        password = str(merged.get("password") or "")
    merged.pop("password", None)
    if not password and prompt_password and not merged.get("dry_run") and sys.stdin.isatty():
        password = getpass.getpass("Clickatell password: ")
    if password:
        register_secret(password)
    return merged, password, ""


def _api_key(env: Mapping[str, str], api_key_env: str | None, file_api_key: str) -> str:
    """``BULKSEND_API_KEY``, else the variable ``api_key_env`` names, else ``api_key`` of the file."""
    key = env.get("BULKSEND_API_KEY") or ""
    if not key and api_key_env:
        key = env.get(api_key_env, "")
        if not key:
            raise ConfigError(
                f"the config names api_key_env = {api_key_env!r} but that variable is not set"
            )
    if not key:
        key = file_api_key
    if key:
        register_secret(key)
    return key
