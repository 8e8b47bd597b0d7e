"""The run's state: whether it stops or aborts, why, and the exit code it ends with.

Every room of the campaign reports here; this module imports none of them (it is the floor).

* :meth:`RunControl.stop`: stop reading and sending new batches; batches in flight finish and are
  recorded, queued ones stay pending for a resume. A later stop keeps the first one's reason and
  exit code (only a storage failure or a second signal replaces them).
* :meth:`RunControl.fail_storage`: a file of the campaign cannot be written, so no request may
  leave from now on (its outcome could not be recorded). When the journal itself failed, batches
  in flight are abandoned at once (their open intents make the next run record them ``unknown``);
  when only the rejects or receipts file failed, they get :data:`STORAGE_DRAIN_SECONDS` to finish
  and be recorded. The exit code is :data:`EXIT_STORAGE`.
* :meth:`RunControl.guard`: runs one stage of the pipeline; a storage failure or an unexpected
  error in it aborts the whole pipeline instead of leaving the other stages waiting on a queue.
* :meth:`RunControl.signals`: while sending, the first SIGINT or SIGTERM stops (exit 130 or 143),
  a second one cancels everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterator
from typing import Any

from bulksend.errors import StorageError
from bulksend.journal import Journal

__all__ = [
    "EXIT_FATAL",
    "EXIT_INPUT",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_STORAGE",
    "STORAGE_DRAIN_SECONDS",
    "RunControl",
]

log = logging.getLogger("bulksend.campaign")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_FATAL = 2
EXIT_LOCKED = 3
EXIT_STORAGE = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

STORAGE_DRAIN_SECONDS = 5.0
"""After a storage failure that still lets outcomes be recorded, in-flight batches get this long."""


class RunControl:
    """One run's stop and abort switches, the reason it stopped and its exit code.

    ``stopping`` is set by :meth:`stop` (the producer cuts no more batches, senders send no more);
    ``abort`` by a storage failure or a broken stage (the pipeline cancels what is in flight).
    """

    def __init__(self) -> None:
        self.reason = ""
        self.exit_code = EXIT_OK
        self.stopping = asyncio.Event()
        self.abort = asyncio.Event()  # stop everything now: in-flight requests are cancelled
        self.storage_error: StorageError | None = None
        self.unexpected: BaseException | None = None
        self.journal: Journal | None = None  # once opened: a storage failure refuses its intents

    def stop(self, reason: str, exit_code: int) -> None:
        """Stop reading and sending new batches; in-flight batches finish."""
        if not self.stopping.is_set():
            self.reason = reason
            self.exit_code = exit_code
            self.stopping.set()

    def fail_storage(self, exc: StorageError) -> None:
        """A file of the campaign cannot be written: no request may leave from now on (its
        outcome could not be recorded). Batches in flight are abandoned at once: their intents
        stay open, so the next run records them ``unknown``."""
        if self.storage_error is not None:
            return
        self.storage_error = exc
        self.reason = str(exc)
        self.exit_code = EXIT_STORAGE
        self.stopping.set()
        journal = self.journal
        if journal is None:
            self.abort.set()
            return
        journal.refuse_intents = exc
        if exc.path in (str(journal.results_path), str(journal.intent_path)):
            journal.failed = journal.failed or exc
            self.abort.set()
        else:
            # Outcomes can still be recorded (the rejects or receipts file failed): let the
            # batches in flight finish and be recorded, within a bound.
            asyncio.get_running_loop().call_later(STORAGE_DRAIN_SECONDS, self.abort.set)

    async def guard(self, stage: Coroutine[Any, Any, None]) -> None:
        """Run one stage; a storage failure or an unexpected error aborts the whole pipeline
        instead of leaving the other stages waiting on a queue nobody serves."""
        try:
            await stage
        except StorageError as exc:
            self.fail_storage(exc)
        except Exception as exc:
            if self.unexpected is None:
                self.unexpected = exc
            self.stopping.set()
            self.abort.set()

    @contextlib.contextmanager
    def signals(self, install: bool) -> Iterator[None]:
        """SIGINT / SIGTERM handlers for the block (``install`` False: none, the caller's own
        stay); the handlers the process had before are restored after it."""
        if not install:
            yield
            return
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        presses = {"n": 0}

        def on_signal(signum: int) -> None:
            presses["n"] += 1
            code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
            if presses["n"] == 1:
                log.warning(
                    "%s: finishing the batches in flight, then stopping "
                    "(press Ctrl-C again to abort at once)",
                    signal.Signals(signum).name,
                )
                self.stop(f"interrupted by {signal.Signals(signum).name}", code)
            else:
                self.reason = f"aborted by a second {signal.Signals(signum).name}"
                self.exit_code = code
                if main is not None:
                    main.cancel()

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
                handler = previous[signum]
                if handler is not None:  # restore the CLI's own (remove_signal_handler resets)
                    signal.signal(signum, handler)

    @property
    def interrupted(self) -> bool:
        """Ended by SIGINT or SIGTERM (a cancellation then still yields a summary)."""
        return self.exit_code in (EXIT_SIGINT, EXIT_SIGTERM)
