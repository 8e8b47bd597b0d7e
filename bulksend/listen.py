"""``HOST:PORT``: the address a server of ours listens on (receipts, metrics).

One pure function, :func:`parse_listen`, shared by :mod:`bulksend.receipts` (``--listen``) and
:mod:`bulksend.metrics` (``--metrics-listen``) so that neither imports the other for it. It
accepts ``[v6]:PORT`` as well, and a malformed address is a
:class:`~bulksend.errors.ConfigError` (a usage error) naming what was given.

:func:`require_credentials` is the callback receivers' rule (``bulksend receipts`` and ``send
--receipts-listen``): on an address other than loopback (:func:`is_loopback`), callers must prove
themselves with a token or HTTP basic auth, or the receiver does not start.
"""

from __future__ import annotations

import ipaddress

from bulksend.errors import ConfigError

__all__ = ["is_loopback", "parse_listen", "require_credentials"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> ``(host, port)``; ConfigError if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:8080), not {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def require_credentials(host: str, token: str | None, basic_auth: tuple[str, str] | None) -> None:
    """Refuse (ConfigError) to receive callbacks on ``host`` unless it is loopback or callers
    must prove themselves with a token or HTTP basic auth."""
    if not token and basic_auth is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to receive callbacks on {host} without --token or basic auth "
            "(a token: --token or BULKSEND_RECEIPTS_TOKEN; basic auth: receipts --auth-user or "
            "send --receipts-auth-user, with BULKSEND_RECEIPTS_PASSWORD): anyone who can reach "
            "it could forge delivery receipts or STOP replies; loopback addresses need neither"
        )
