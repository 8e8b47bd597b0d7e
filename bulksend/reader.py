"""Read the recipient file on the other core: :class:`~bulksend.source.RecipientSource` in a child
process, its blocks streamed back over a pipe.

Parsing, normalising and deduplicating cost about as much CPU per recipient as sending does, and
the campaign's event loop is single-threaded: moving the reader to its own process lets a two-core
machine read and send at once. What it promises:

* the same blocks, in the same order, with the same ``stats`` as reading in-process (with a
  template too: its rendered ``contents`` and ``fields`` cross the pipe, ~0.6 µs a row to unpickle
  in the parent against ~3 µs a row to render and check);
* a whole-file :class:`~bulksend.errors.InputError` is raised in the parent with the same message;
* bounded memory: the pipe (and one block in flight) is the only buffer, so a child that runs ahead
  blocks on the pipe;
* the child never outlives the campaign: :meth:`ProcessReader.close` ends it, and if the parent
  dies (``kill -9``) the child's next write fails on the closed pipe and it exits. It ignores
  SIGINT, so Ctrl-C is the parent's to handle.

:class:`InlineReader` reads in-process (small files, or where processes are unwanted); both offer
``async for block in reader.blocks()``, ``stats`` and ``bytes_read``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from bulksend import lock
from bulksend.errors import BulkSendError, InputError
from bulksend.numbers import NumberPolicy
from bulksend.optout import OptOuts
from bulksend.source import Block, RecipientSource, Reject, SourceStats
from bulksend.template import Template, check_options

__all__ = ["InlineReader", "ProcessReader", "make_reader"]

# Files smaller than this (about 300 000 numbers) are read in-process: a child costs more
# than it saves.
PROCESS_THRESHOLD_BYTES = 4 << 20
_BLOCK_ROWS = 8192
_TEMPLATED_BLOCK_ROWS = 256
"""A personalised block carries every row's text and values, and the parent unpickles a block in
one call that holds the GIL (about 0.8 µs a row): 256 rows keep each pause of the event loop near
0.2 ms. Measured on the One API at 100 ms and concurrency 64: 8192-row blocks 47k messages/s,
1024 53k, 256 54-56k (plain blocks unpickle at 0.16 µs a row: 8192 rows cost no throughput)."""


class InlineReader:
    """Reads in the event loop's thread, yielding control between blocks."""

    def __init__(self, source: RecipientSource) -> None:
        self.source = source

    @property
    def stats(self) -> SourceStats:
        return self.source.stats

    @property
    def bytes_read(self) -> int:
        return self.source.bytes_read

    async def blocks(self) -> AsyncIterator[Block]:
        for block in self.source.blocks():
            yield block
            await asyncio.sleep(0)

    def close(self) -> None:
        pass


def _child(
    conn: Connection,
    parent_end: Connection | None,
    path: str,
    column: str | int | None,
    policy: NumberPolicy,
    dedupe: bool,
    opt_outs: OptOuts | None,
    template: Template | None = None,
    max_parts: int | None = None,
    unicode: str = "auto",
    keep_fields: bool = True,
) -> None:
    if parent_end is not None:
        # A forked child holds a copy of the parent's reading end: close it, or the pipe would
        # never report the parent gone and a child blocked on a full pipe would wait forever.
        parent_end.close()
    lock.close_inherited()  # the campaign's lock is the parent's alone (see bulksend.lock)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    source = RecipientSource(
        path,
        column=column,
        policy=policy,
        dedupe=dedupe,
        block_rows=_BLOCK_ROWS if template is None else _TEMPLATED_BLOCK_ROWS,
        compact_dedupe=True,
        opt_outs=opt_outs,  # memory matters most for big files; this core has CPU to spare
        template=template,
        max_parts=max_parts,
        unicode=unicode,
    )
    try:
        for block in source.blocks():
            rejects = [(r.row, r.raw, r.reason) for r in block.rejects]
            conn.send(
                (
                    "block",
                    block.rows,
                    block.msisdns,
                    rejects,
                    block.last_row,
                    block.contents,
                    block.fields if keep_fields else None,
                    source.stats,
                    source.bytes_read,
                )
            )
        conn.send(("end", source.stats, source.bytes_read))
    except InputError as exc:
        with contextlib.suppress(OSError):
            conn.send(("input_error", exc.reason, exc.path, exc.row))
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the parent is gone
    except Exception as exc:  # reported to the parent, which decides
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class ProcessReader:
    """Runs the reader in a child process (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        column: str | int | None,
        policy: NumberPolicy,
        dedupe: bool,
        opt_outs: OptOuts | None = None,
        template: Template | None = None,
        max_parts: int | None = None,
        unicode: str = "auto",
        keep_fields: bool = True,
    ) -> None:
        """``keep_fields=False``: blocks come without the rows' field values (``contents``
        only), for a protocol that sends rendered texts; they are not pickled across then."""
        if template is not None:
            check_options(unicode, max_parts)  # here, not as a failure of the child
        self.path = os.fspath(path)
        self.stats = SourceStats()
        self.bytes_read = 0
        methods = multiprocessing.get_all_start_methods()
        fork = "fork" in methods
        context: Any = multiprocessing.get_context("fork" if fork else "spawn")
        self._conn, child_conn = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(
                child_conn,
                self._conn if fork else None,
                self.path,
                column,
                policy,
                dedupe,
                opt_outs,
                template,
                max_parts,
                unicode,
                keep_fields,
            ),
            name="bulksend-reader",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulksend-reader")

    async def blocks(self) -> AsyncIterator[Block]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message: tuple[Any, ...] = await loop.run_in_executor(
                    self._executor, self._conn.recv
                )
            except EOFError:
                raise BulkSendError(
                    f"the reader process for {self.path} stopped unexpectedly "
                    f"(exit code {self._process.exitcode})"
                ) from None
            kind = message[0]
            if kind == "block":
                _, rows, msisdns, rejects, last_row, contents, fields, stats, bytes_read = message
                self.stats, self.bytes_read = stats, bytes_read
                yield Block(
                    rows, msisdns, [Reject(*r) for r in rejects], last_row, contents, fields
                )
            elif kind == "end":
                _, self.stats, self.bytes_read = message
                return
            elif kind == "input_error":
                _, reason, path, row = message
                raise InputError(reason, path=path, row=row)
            else:
                raise BulkSendError(f"the reader process failed: {message[1]}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)


def make_reader(
    path: str | os.PathLike[str],
    *,
    column: str | int | None,
    policy: NumberPolicy,
    dedupe: bool,
    mode: str = "auto",
    opt_outs: OptOuts | None = None,
    template: Template | None = None,
    max_parts: int | None = None,
    unicode: str = "auto",
    keep_fields: bool = True,
) -> InlineReader | ProcessReader:
    """``process`` / ``inline`` as asked; ``auto``: a process for files over a few MB.

    With a ``template`` each block carries the rendered text of its rows (see
    :class:`~bulksend.source.RecipientSource`); ``max_parts`` and ``unicode`` are the row checks'.
    """
    if mode == "auto":
        try:
            big = os.stat(path).st_size >= PROCESS_THRESHOLD_BYTES
        except OSError:
            big = False
        mode = "process" if big else "inline"
    if mode == "process":
        return ProcessReader(
            path,
            column=column,
            policy=policy,
            dedupe=dedupe,
            opt_outs=opt_outs,
            template=template,
            max_parts=max_parts,
            unicode=unicode,
            keep_fields=keep_fields,
        )
    return InlineReader(
        RecipientSource(
            path,
            column=column,
            policy=policy,
            dedupe=dedupe,
            opt_outs=opt_outs,
            template=template,
            max_parts=max_parts,
            unicode=unicode,
        )
    )
