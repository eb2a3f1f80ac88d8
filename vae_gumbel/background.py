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
    """One thread that runs submitted work in order; ``drain`` waits for all of it.

    With ``max_pending``, ``submit`` first waits until fewer than that many pieces of work are
    unfinished. Each piece holds what it writes (a copy of a model's state, a picture), so a disk
    slower than training (a network file system under a large stack on a GPU) holds the training
    thread back instead of filling the memory.
    """

    def __init__(self, max_pending: int | None = None) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vae-gumbel-writer")
        self.pending: list[Future] = []
        self.max_pending = max_pending

    def submit(self, work: Callable[..., Any], *args: Any) -> None:
        self._raise_finished_errors()
        while self.max_pending is not None and len(self.pending) >= self.max_pending:
            self.pending.pop(0).result()  # the oldest; raises its error, if any
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
