"""Does this results file go with its journal? The refusals that keep a slip of the operator's
bookkeeping (or a machine crash) from texting anyone twice.

A journal logs the batches it sent; its results file holds their outcomes. Rows the results file no
longer holds look pending to a resume, and would be sent again. So, before a resume:

* :func:`holds_results`: a results file counts once it holds its whole header line. What a crash
  leaves of one just created (empty, or part of the header) does not: nothing was sent before it
  was on disk, and it is made again;
* :func:`refuse_without_results`: a journal that logged any batch, standing without its results
  file (moved away, deleted), is refused;
* :func:`unsettled_intents`: which logged batches a resume must account for (every one that an
  ``A`` line does not return to pending);
* :func:`check_watermark`: a results file shorter than the journal's last ``W`` line (the size it
  had on stable storage at a timer fsync) is an older copy put back, or one cut short: refused.

Each refusal is a :class:`~bulksend.errors.ConfigError` (exit 1) naming both files and the choices:
put the file back, or ``--restart``. Nothing is written.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bulksend.errors import ConfigError, StorageError
from bulksend.journal.files import log_lines
from bulksend.journal.state import RESULTS_HEADER

__all__ = [
    "check_watermark",
    "holds_results",
    "refuse_without_results",
    "unsettled_intents",
    "watermark",
]


def holds_results(path: Path) -> bool:
    """The file exists and holds at least its header line (see the module docstring)."""
    head = (RESULTS_HEADER + "\n").encode()
    try:
        with path.open("rb") as f:
            start = f.read(len(head) + 1)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(str(path), exc, "read") from None
    return not (len(start) < len(head) and head.startswith(start))


def _rows(spec: str) -> int:
    count = 0
    for part in spec.split(","):
        first, _, last = part.partition("-")
        count += int(last) - int(first) + 1 if last else 1
    return count


def refuse_without_results(results: Path, intents: Path) -> None:
    """Raise when the journal ``intents`` logged any batch (a journal with its header only is a
    start that got no further: it needs no results file)."""
    batches = rows = 0
    try:
        with intents.open("r", encoding="utf-8", errors="replace") as f:
            f.readline()
            for line in log_lines(f):
                kind, _, rest = line.partition(" ")
                if kind == "I":
                    batches += 1
                    rows += _rows(rest.split(" ", 2)[1])
                elif kind == "S" and rest.split(" ", 1)[0].strip() not in ("", "0"):
                    batches += 1
    except (OSError, ValueError, IndexError):
        batches += 1  # cannot tell: assume the worst
    if not batches:
        return
    raise ConfigError(
        f"the results file {results} is missing, but its journal {intents} says this campaign "
        "already sent messages recorded there"
        + (f" ({rows:,} rows of batches it logged)" if rows else "")
        + ". Sending those rows as pending would text them twice, so nothing was sent. "
        "Choose: put the results file back and rerun the same command to resume, or pass "
        "--restart to move the journal aside and start the campaign over (which texts every "
        "row again)"
    )


def unsettled_intents(intents: Path) -> tuple[dict[int, str], int]:
    """The intents a resume must look at (``seq -> "rows numbers"``) and the last sequence number
    used. Every intent counts unless an ``A`` line (abandoned: certainly not processed) settles
    it; a ``D`` line is never trusted alone, since after a machine crash it can be on disk while
    the results line it follows is not: rows of such an intent that the results file lacks are
    ``unknown``, never pending."""
    pending: dict[int, str] = {}
    seq = 0
    with intents.open("r", encoding="utf-8") as f:
        f.readline()
        for line in log_lines(f):
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "I":
                seq_text, _, spec = rest.partition(" ")
                pending[int(seq_text)] = spec
                seq = max(seq, int(seq_text))
            elif kind == "A":
                pending.pop(int(rest), None)
                seq = max(seq, int(rest))
            elif kind in ("D", "S"):
                seq = max(seq, int(rest.split(" ", 1)[0]))
    return pending, seq


def watermark(intents: Path) -> int:
    """The journal's last ``W``: bytes of the results file known durable (the last one wins: a
    rewrite that shrinks the file lowers it first)."""
    mark = 0
    with intents.open("r", encoding="utf-8", errors="replace") as f:
        f.readline()
        for line in log_lines(f):
            if line.startswith("W "):
                with contextlib.suppress(ValueError):
                    mark = int(line[2:])
    return mark


def check_watermark(results: Path, intents: Path) -> None:
    """Raise when ``results`` is shorter than the journal knows it was on disk."""
    mark = watermark(intents)
    size = results.stat().st_size
    if size >= mark:
        return
    raise ConfigError(
        f"the results file {results} holds {size:,} bytes, but its journal {intents} says "
        f"{mark:,} bytes of results were on disk: an older copy was put back, or the file was "
        "cut short. Rows it no longer holds may have been sent; sending them as pending would "
        "text them twice, so nothing was sent. Choose: put the complete results file back and "
        "rerun the same command to resume, or pass --restart to move both files aside and start "
        "the campaign over (which texts every row again)"
    )
