"""Work done off the training thread: encoding pictures and writing checkpoints.

The training thread prepares what only it may touch (anything on the device: decoded images,
copies of the state) and hands CPU-only work to background threads. Each piece of work goes into
a lane (a member of the stack): a lane's work runs in order, on one thread, so a member's
checkpoints are never written out of order, while different members' work may run at the same
time. An error there is raised on the training thread at the next hand-over or at ``drain``, so
nothing fails silently.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from vae_gumbel.threads import usable_cores
from vae_gumbel.timeline import TIMELINE, WRITER_CATCH_UP

# The most threads that write a run's files. PNG encoding runs in parallel (PIL releases the GIL:
# 2.0x with 2 threads on 2 cores); checkpoint writes are bound by the disk, not by threads.
MAX_WRITER_THREADS = 8


def writer_threads(device_type: str, members: int) -> int:
    """Gives how many threads write a run's files. On a CPU, one: the training steps use the
    cores. On a GPU, whose training thread mostly waits, one per member up to MAX_WRITER_THREADS,
    leaving that thread a core of the ones this process may use (a SLURM job's, say)."""
    if device_type == "cpu":
        return 1
    return max(1, min(members, MAX_WRITER_THREADS, usable_cores() - 1))


class BackgroundWriter:
    """Threads that run submitted work, in order within a lane; ``drain`` waits for all of it.

    Lane ``i`` runs on thread ``i % threads``. With ``max_pending``, ``submit`` first waits until
    fewer than that many pieces of work are unfinished. Each piece holds what it writes (a copy of
    a model's state, a picture), so a disk slower than training (a network file system under a
    large stack on a GPU) holds the training thread back instead of filling the memory.
    """

    def __init__(self, max_pending: int | None = None, threads: int = 1) -> None:
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vae-gumbel-writer-{i}")
            for i in range(threads)
        ]
        self.pending: list[Future] = []
        self.max_pending = max_pending

    def submit(self, work: Callable[..., Any], *args: Any, lane: int = 0) -> None:
        self._raise_finished_errors()
        if self.max_pending is not None and len(self.pending) >= self.max_pending:
            with TIMELINE.phase(WRITER_CATCH_UP):
                while len(self.pending) >= self.max_pending:
                    self.pending.pop(0).result()  # the oldest; raises its error, if any
        self.pending.append(self.executors[lane % len(self.executors)].submit(work, *args))

    def lane(self, lane: int) -> Callable[..., None]:
        """Gives a ``submit`` that puts work into lane ``lane``."""
        return lambda work, *args: self.submit(work, *args, lane=lane)

    def drain(self) -> None:
        """Waits for all submitted work; raises the first error any of it raised."""
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Waits for what is in flight (so every write completes) and stops the threads."""
        for executor in self.executors:
            executor.shutdown(wait=True)

    def _raise_finished_errors(self) -> None:
        done = [future for future in self.pending if future.done()]
        self.pending = [future for future in self.pending if not future.done()]
        for future in done:
            future.result()
