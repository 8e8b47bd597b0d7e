"""Test-wide set-up.

The suite runs in parallel (pytest-xdist, see the Makefile), so every test leaves the process as
it found it: the state that ``bulksend.cli.main`` sets for a whole process (the root logger's
handlers, logger levels, ``warnings.showwarning``, the SIGTERM handler, the collector's
thresholds) is put back after each test, and hypothesis has no per-example deadline: a deadline
is a timing bound that a loaded machine breaks, and speed is measured by the benchmarks.

aioresponses 0.7.x builds ``aiohttp.ClientResponse`` without the ``stream_writer`` argument that
aiohttp 3.14 made required (pnuckowski/aioresponses#289). Until a release handles it, the mock's
response class gets a stand-in writer; this touches only the mock, never the code under test.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import tempfile
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.core
import hypothesis
import pytest

from bulksend.errors import forget_secrets

hypothesis.settings.register_profile(
    "bulksend",
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("bulksend")


class _NoWriter:
    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(*args, **kwargs)


# The campaign registry (bulksend.registry) must never be the developer's own: point it, and that
# of every child process (XDG_STATE_HOME survives the tests' BULKSEND_*-free child environments),
# at a scratch directory for the whole session, and at the test's own one in each test.
_SESSION_STATE = tempfile.mkdtemp(prefix="bulksend-test-state-")
os.environ["BULKSEND_STATE_DIR"] = os.path.join(_SESSION_STATE, "bulksend")
os.environ["XDG_STATE_HOME"] = _SESSION_STATE


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> Path:
    """Each test its own registry: runs of one test never refuse those of another."""
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.setenv("BULKSEND_STATE_DIR", str(home / "bulksend"))
    return home / "bulksend"


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Any:
    """Secrets registered by one test (e.g. a short password) must not mask another's messages."""
    yield
    forget_secrets()


@pytest.fixture(autouse=True)
def _aioresponses_compat() -> Any:
    with mock.patch.object(aioresponses.core, "ClientResponse", _CompatResponse):
        yield


LoggerState = tuple[logging.Logger, int, list[logging.Handler], bool, bool]


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(lg for lg in named if isinstance(lg, logging.Logger))]


def _logger_states() -> list[LoggerState]:
    return [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in _loggers()]


def _is_pytests(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("_pytest.")


@pytest.fixture(autouse=True)
def _process_state_restored() -> Any:
    """What a test changed for the whole process (``cli.main`` run in-process does) is undone."""
    loggers = _logger_states()
    show_warning = warnings.showwarning
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    thresholds = gc.get_threshold()
    yield
    known = {state[0] for state in loggers}
    # A logger first made during the test goes back to what a new logger is.
    made = [(lg, logging.NOTSET, [], True, False) for lg in _loggers() if lg not in known]
    for logger, level, kept, propagate, disabled in loggers + made:
        logger.setLevel(level)
        # pytest's own capturing handlers come and go with each phase of a test: leave those.
        logger.handlers[:] = [h for h in kept if not _is_pytests(h)] + [
            h for h in logger.handlers if _is_pytests(h)
        ]
        logger.propagate, logger.disabled = propagate, disabled
    warnings.showwarning = show_warning
    for signum, handler in handlers.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
    gc.set_threshold(*thresholds)
