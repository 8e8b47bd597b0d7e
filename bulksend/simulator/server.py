"""The life cycle both simulators share (the legacy HTTP API and the One API).

:class:`ServedApp` serves a subclass's :meth:`~ServedApp.make_app` on ``host:port`` (``port=0``
picks a free one), opens the ledger file first (appending when started again), starts the
subclass's delivery-callback dispatcher once serving, and stops in the reverse order: callbacks,
then the server (in-flight requests get ``shutdown_timeout`` seconds), then the ledger. Its access
log never shows a query string or a header (where the password or the API key travel).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.log import access_logger

from bulksend.simulator.callbacks import CallbackDispatcher
from bulksend.simulator.ledger import Ledger

__all__ = ["PathOnlyAccessLogger", "ServedApp"]


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Method, path, status and time: never the query string or a header (they may hold a
    password or an API key)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.6f',
            request.remote,
            request.method,
            request.path,
            response.status,
            time,
        )


class ServedApp:
    """Serve ``make_app()`` with a ledger and callbacks (see the module docstring). Subclasses set
    the attributes below in ``__init__`` and implement :meth:`make_app` and
    :meth:`make_callbacks`."""

    ledger: Ledger
    callbacks: CallbackDispatcher | None
    callback_url: str | None
    _ledger_path: str | os.PathLike[str] | None
    _host: str
    _port: int
    _shutdown_timeout: float
    _access_log: bool
    _runner: web.AppRunner | None
    _bound_port: int | None
    _started_before: bool

    def make_app(self) -> web.Application:
        raise NotImplementedError

    def make_callbacks(self, url: str) -> CallbackDispatcher:
        raise NotImplementedError

    async def start(self) -> None:
        """Open the ledger file (if any) and start serving; ``port=0`` picks a free port."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        if self._ledger_path is not None:
            self.ledger.open(self._ledger_path, append=self._started_before)
        runner = web.AppRunner(
            self.make_app(),
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
            access_log_class=PathOnlyAccessLogger,
            access_log=access_logger if self._access_log else None,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self.ledger.close()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])
        self._started_before = True
        if self.callback_url:
            self.callbacks = self.make_callbacks(self.callback_url)
            await self.callbacks.start()

    async def stop(self) -> None:
        """Stop serving (in-flight requests get ``shutdown_timeout`` seconds), close the ledger."""
        runner, self._runner = self._runner, None
        callbacks, self.callbacks = self.callbacks, None
        try:
            if callbacks is not None:
                await callbacks.stop()
            if runner is not None:
                await runner.cleanup()
        finally:
            self.ledger.close()

    async def __aenter__(self) -> Self:
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
        """The TCP port served on (the real one when constructed with ``port=0``)."""
        if self._bound_port is None:
            raise RuntimeError("the simulator has not been started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"
