"""The drawn progress bar of send and track on a terminal, and plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from bulksend.progress import bar_line
from bulksend.track import TrackSnapshot
from bulksend.track_view import (
    PlainTrackProgress,
    RichTrackProgress,
    make_track_progress,
)


def _shown(renderable: object, width: int = 140) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def _snap(**kw: object) -> TrackSnapshot:
    values: dict[str, object] = {
        "elapsed": 3.0,
        "round": 1,
        "to_ask": 200,
        "asked": 84,
        "delivered": 50,
        "failed": 4,
        "gone": 0,
        "not_final": 30,
        "unanswered": 0,
        "throttled": 2,
        "rate": 28.0,
    }
    values.update(kw)
    return TrackSnapshot(**values)  # type: ignore[arg-type]


def test_the_bar_shows_percentage_rate_eta_and_counts_on_one_line() -> None:
    text = _shown(bar_line("send", 0.42, "1,234 msg/s", "ETA 0m12s", "9 accepted 1 rejected"))
    [line] = text.strip().splitlines()
    assert line.startswith("send ") and "━" in line
    for part in ("42.0%", "1,234 msg/s", "ETA 0m12s", "9 accepted 1 rejected"):
        assert part in line


def test_an_unknown_total_draws_a_bar_without_a_percentage() -> None:
    line = _shown(bar_line("send", None, "0 msg/s", "ETA -", "")).strip()
    assert "%" not in line and "━" in line


def test_track_draws_a_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_track_progress("auto", Tty()), RichTrackProgress)
    pipe = io.StringIO()
    plain = make_track_progress("auto", pipe)
    assert isinstance(plain, PlainTrackProgress)
    plain(_snap(done=True))
    assert "asked=84/200" in pipe.getvalue() and "eta=-" in pipe.getvalue()
    assert make_track_progress("off", Tty()) is None


def test_the_track_bar_counts_and_the_wait_between_rounds() -> None:
    out = io.StringIO()
    view = RichTrackProgress(Console(file=out, width=160, force_terminal=True, color_system=None))
    view(_snap(asked=200, waiting=12.0))
    view.close()
    text = out.getvalue()
    assert "100.0%" in text and "next round in 0m12s" in text
    assert "50 delivered" in text and "4 failed" in text and "30 not final" in text


def test_send_draws_the_bar_above_its_figures() -> None:
    from bulksend.campaign import Snapshot
    from bulksend.progress import RichProgress

    out = io.StringIO()
    view = RichProgress(Console(file=out, width=160, force_terminal=True, color_system=None))
    view(Snapshot(12.0, 5000, 4900, 100, 0, 2000, 1900, 100, 0, 32, 166.0, 0.4))
    view.close()
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0].removeprefix("\x1b[?25l").startswith("send ")  # after the hide-cursor code
    assert "40.0%" in lines[0] and "166 msg/s" in lines[0]
    assert "1,900 accepted" in lines[0] and any("in flight" in line for line in lines[1:])
