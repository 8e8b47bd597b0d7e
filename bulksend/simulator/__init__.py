"""A faithful local copy of Clickatell's legacy HTTP API (``/http/`` and the batch interface
``/http_batch/``), for tests, demos and benchmarks.

The public surface: :class:`Simulator` (the server and its account), :class:`Faults` (every knob,
mutable while it runs), :class:`Ledger` / :class:`LedgerEntry` (what was accepted) and
:func:`read_ledger` (a ledger CSV written by a simulator process; each entry's ``options`` are
the parameters it was sent with, :attr:`LedgerEntry.option_map` as a dict, and its ``status``
says whether it was scheduled or stopped by ``delmsg``). ``cli.py`` wires them to ``bulksend
simulate``. Nothing here imports bulksend's client side.
"""

from bulksend.simulator.app import (
    DEFAULT_API_ID,
    DEFAULT_MINUTE_SECONDS,
    DEFAULT_PASSWORD,
    DEFAULT_TWO_WAY_NUMBER,
    DEFAULT_USER,
    MAX_NUMBERS_GET,
    MAX_NUMBERS_POST,
    Simulator,
    SimulatorStats,
)
from bulksend.simulator.faults import Fault, Faults
from bulksend.simulator.ledger import AcceptedBatch, Ledger, LedgerEntry, read_ledger

__all__ = [
    "DEFAULT_API_ID",
    "DEFAULT_MINUTE_SECONDS",
    "DEFAULT_PASSWORD",
    "DEFAULT_TWO_WAY_NUMBER",
    "DEFAULT_USER",
    "MAX_NUMBERS_GET",
    "MAX_NUMBERS_POST",
    "AcceptedBatch",
    "Fault",
    "Faults",
    "Ledger",
    "LedgerEntry",
    "Simulator",
    "SimulatorStats",
    "read_ledger",
]
