"""``python -m bulksend.simulator``: the same server as ``bulksend simulate``."""

from __future__ import annotations

import argparse

from bulksend.simulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bulksend.simulator",
        description="Serve a local copy of Clickatell's legacy HTTP API, with faults on demand.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


raise SystemExit(main())
