"""Each wire protocol as the end-to-end, chaos, soak and hostile-input suites use it.

A :class:`Wire` knows how to start the simulator that speaks it (in process or as a child), what
input and text a campaign over it uses (a personalised ``#field#`` template for the batch interface
and for the personalised One API case), the settings or command-line flags that select it, and how
to revoke its credentials midway. Tests take a ``wire`` and run the same scenario over each.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulksend.config import CampaignSettings
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults, Simulator
from bulksend.simulator.one_api import DEFAULT_API_KEY, OneApiSimulator
from tests.e2e.support import cli_env, distinct_numbers

TEMPLATE = "Hi #first_name#, your order #order# ships today"
NAMES = ("Thandi", "Sipho", "Anna", "Pieter", "Lerato", "Johan", "Zoë", "Naledi", "陈", "Ahmed")

AnySimulator = Simulator | OneApiSimulator


@dataclass(frozen=True)
class Wire:
    """One protocol under test: ``sendmsg``, ``batch`` (the legacy batch interface, personalised),
    ``one`` (the One API, one text) or ``one-personalised``."""

    name: str

    @property
    def api(self) -> str:
        return "one" if self.name.startswith("one") else "legacy"

    @property
    def personalised(self) -> bool:
        return self.name in ("batch", "one-personalised")

    @property
    def per_request(self) -> int:
        return {"sendmsg": 600, "batch": 1}.get(self.name, 200)

    @property
    def text(self) -> str:
        return TEMPLATE if self.personalised else "Hello from the tests"

    def __str__(self) -> str:
        return self.name

    # -- input -------------------------------------------------------------------------------------

    def write_input(self, path: Path, count: int, *, seed: int = 1) -> list[str]:
        """A CSV of ``count`` distinct numbers (with ``first_name``/``order`` columns when
        personalised); returns the numbers in file order."""
        numbers = distinct_numbers(count, seed=seed)
        if not self.personalised:
            path.write_text("phone\n" + "".join(f"+{n}\n" for n in numbers), encoding="utf-8")
            return numbers
        rng = random.Random(seed)
        lines = ["phone,first_name,order\n"]
        lines += [f"+{n},{rng.choice(NAMES)},{1000 + i}\n" for i, n in enumerate(numbers)]
        path.write_text("".join(lines), encoding="utf-8")
        return numbers

    def expected_texts(self, path: Path) -> dict[str, str]:
        """number -> the text its message must carry (the rendered template when personalised)."""
        out: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            cells = line.split(",")
            number = cells[0].lstrip("+")
            if self.personalised:
                out[number] = f"Hi {cells[1]}, your order {cells[2]} ships today"
            else:
                out[number] = self.text
        return out

    # -- the simulator -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def simulator(self, faults: Faults | None = None, **kw: Any) -> AsyncIterator[Any]:
        faults = faults if faults is not None else Faults(seed=1234)
        if self.api == "one":
            async with OneApiSimulator(faults=faults, **kw) as one:
                yield one
        else:
            async with Simulator(faults=faults, **kw) as legacy:
                yield legacy

    def simulator_args(self) -> list[str]:
        """Extra ``bulksend simulate`` arguments."""
        return ["--api", "one"] if self.api == "one" else []

    def revoke(self, sim: Any) -> None:
        """Rotate the credentials the campaign uses: its next requests are refused (fatal)."""
        if self.api == "one":
            sim.set_api_key("rotated-key-0000")
        else:
            sim.set_credentials(password="rotated-password")

    def restore(self, sim: Any) -> None:
        if self.api == "one":
            sim.set_api_key(DEFAULT_API_KEY)
        else:
            sim.set_credentials(password=DEFAULT_PASSWORD)

    # -- the campaign ------------------------------------------------------------------------------

    def settings(self, sim: Any, input_path: Path, **overrides: Any) -> CampaignSettings:
        values: dict[str, Any] = {
            "input_path": input_path,
            "text": self.text,
            "endpoint": sim.url,
            "concurrency": 8,
            "install_signal_handlers": False,
            "retry_max_seconds": 30.0,
        }
        if self.name == "sendmsg":
            values["batch_size"] = 100  # the One API's size: as many requests, as many faults
        if self.api == "one":
            values.update(api="one", api_key=DEFAULT_API_KEY)
        else:
            values.update(user=DEFAULT_USER, api_id=DEFAULT_API_ID, password=DEFAULT_PASSWORD)
        values.update(overrides)
        return CampaignSettings(**values)

    def send_args(self) -> list[str]:
        """Extra ``bulksend send`` arguments (the text is given separately)."""
        return ["--api", "one"] if self.api == "one" else []

    def env(self) -> dict[str, str]:
        """The environment of a ``bulksend send`` child: the simulator's demo credentials."""
        return cli_env(BULKSEND_API_KEY=DEFAULT_API_KEY)


WIRES = (Wire("sendmsg"), Wire("batch"), Wire("one"), Wire("one-personalised"))


def wire_ids() -> Iterator[str]:
    return (w.name for w in WIRES)
