"""``HOST:PORT``: the address a server of ours listens on (receipts, metrics).

One pure function, :func:`parse_listen`, shared by :mod:`bulksend.receipts` (``--listen``) and
:mod:`bulksend.metrics` (``--metrics-listen``) so that neither imports the other for it. It
accepts ``[v6]:PORT`` as well, and a malformed address is a
:class:`~bulksend.errors.ConfigError` (a usage error) naming what was given.
"""

from __future__ import annotations

from bulksend.errors import ConfigError

__all__ = ["parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> ``(host, port)``; ConfigError if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:8080), not {text!r}")
    return host, int(port)
