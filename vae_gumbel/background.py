"""Work done off the training thread: encoding pictures and writing checkpoints.

The training thread prepares what only it may touch (anything on the device: decoded images,
copies of the state) and hands CPU-only work to one background thread, in order. An error there
is raised on the training thread at the next hand-over or at ``drain``, so nothing fails silently.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class BackgroundWriter:
    """One thread that runs submitted work in order; ``drain`` waits for all of it."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vae-gumbel-writer")
        self.pending: list[Future] = []

    def submit(self, work: Callable[..., Any], *args: Any) -> None:
        self._raise_finished_errors()
        self.pending.append(self.executor.submit(work, *args))

    def drain(self) -> None:
        """Waits for all submitted work; raises the first error any of it raised."""
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Waits for what is in flight (so every write completes) and stops the thread."""
        self.executor.shutdown(wait=True)

    def _raise_finished_errors(self) -> None:
        done = [future for future in self.pending if future.done()]
        self.pending = [future for future in self.pending if not future.done()]
        for future in done:
            future.result()
