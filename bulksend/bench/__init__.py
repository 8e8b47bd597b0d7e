"""``bulksend bench``: throughput against the simulator, beside its baselines.

* :mod:`bulksend.bench.harness` — the default sweep (sizes × latencies × concurrencies against an
  unlimited gateway), every measured program a child process;
* :mod:`bulksend.bench.baselines` — the simulator process, the measuring launcher, baselines (a)-(d);
* :mod:`bulksend.bench.report` — medians, ratios, targets, Markdown and plots of the default sweep;
* :mod:`bulksend.bench.throttled` — ``--throttled``: a rate-limited gateway, R sweep, ``--rate``
  and adaptive, achieved share of R, throttled requests, a timeline plot;
* :mod:`bulksend.bench.protocols` — ``--protocols``: each wire protocol (sendmsg, the batch
  interface, the One API; one text and personalised) against its own latency bound.
"""

from __future__ import annotations

import argparse

from bulksend.bench import harness, protocols, throttled

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``bench`` flags on ``parser``."""
    harness.add_arguments(parser)
    throttled.add_arguments(parser)
    protocols.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``bulksend bench``: the throttled scenario with ``--throttled``, else the default sweep."""
    if args.throttled:
        return throttled.run(args)
    if args.protocols or args.api:
        return protocols.run(args)
    return harness.run(args)
