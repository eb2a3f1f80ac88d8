"""The epoch loop: steps over an epoch's batches, sums each member's losses on the device and
reads them back once per log interval, so that a step never waits for the device.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from vae_gumbel.errors import ConfigError, Interrupted
from vae_gumbel.faults import pause
from vae_gumbel.interrupts import StopRequest
from vae_gumbel.progress import shows_progress
from vae_gumbel.schedules import Schedule
from vae_gumbel.step import STEP_VALUES

StepFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, tau) -> (members, 4) values


class StepSums:
    """Sums the steps' values, (members, 4) each, on the device without waiting for it.

    A step costs one kernel: its values times its batch size, written into a row of a buffer.
    A flush, once per ``capacity`` steps or read-back, adds the rows up and notes each member's
    first step with a non-finite value, so the hot loop launches nothing else.
    """

    def __init__(self, device: torch.device, capacity: int, first_step: int, members: int = 1) -> None:
        self.rows = torch.empty(capacity, members, len(STEP_VALUES), device=device)
        self.count = 0
        self.row0_step = first_step  # the global step of the buffer's first row
        self.sums = torch.zeros(members, len(STEP_VALUES), device=device)
        self.first_bad_step = torch.full((members,), -1, dtype=torch.long, device=device)

    def add(self, values: torch.Tensor, batch: int) -> None:
        if self.count == len(self.rows):
            self._flush()
        torch.mul(values.view(self.rows.shape[1:]), batch, out=self.rows[self.count])
        self.count += 1

    def _flush(self) -> None:
        if self.count == 0:
            return
        rows = self.rows[: self.count]
        self.sums += rows.sum(dim=0)
        bad = ~torch.isfinite(rows).all(dim=-1)  # (steps, members)
        first_here = torch.where(bad.any(dim=0), self.row0_step + bad.int().argmax(dim=0), -1)
        self.first_bad_step = torch.where(self.first_bad_step < 0, first_here, self.first_bad_step)
        self.row0_step += self.count
        self.count = 0

    def read(self) -> tuple[np.ndarray, list[int | None]]:
        """Gives the sums so far, (members, 4), and each member's first non-finite step (None if
        none), in one read-back."""
        self._flush()
        both = torch.cat([self.sums.double(), self.first_bad_step.double().unsqueeze(1)], dim=1).cpu().numpy()
        return both[:, :-1], [int(bad) if bad >= 0 else None for bad in both[:, -1]]


class Temperatures:
    """The temperatures of an epoch's steps, one per member: as the step takes them (a device
    tensor) and as the logs show them (host numbers). A fixed schedule is evaluated for the whole
    epoch at once and uploaded once; a learned one is the module's current output."""

    def __init__(self, schedule: Schedule, start_step: int, steps: int, device: torch.device) -> None:
        self.schedule = schedule
        if not schedule.learned:
            self.values = schedule(np.arange(start_step, start_step + steps))  # (steps, members)
            self.on_device = torch.tensor(self.values, dtype=torch.float32, device=device)
        self.start_step = start_step

    def tensor(self, step: int) -> torch.Tensor:
        if self.schedule.learned:
            return self.schedule()
        return self.on_device[step - self.start_step]

    def value(self, step: int) -> np.ndarray:
        if self.schedule.learned:
            return self.schedule().detach().cpu().numpy()
        return self.values[step - self.start_step]


@dataclass
class EpochResult:
    means: np.ndarray  # (members, 4) per-example means of STEP_VALUES over the epoch
    step: int  # global step after the epoch
    temperature: np.ndarray  # (members,) the temperature of the epoch's last step
    seconds: float  # training, without compiling and graph capture
    images: int  # per member
    setup_seconds: float = 0.0  # compiling and graph capture during the epoch


def train_epoch(
    step_fn: StepFunction,
    batches: Iterable[torch.Tensor],
    temperatures: Temperatures,
    *,
    num_batches: int,
    log_every: int,
    on_log: Callable[[np.ndarray, np.ndarray, int], None] | None = None,
    on_failure: Callable[[int, int], None] | None = None,
    description: str = "",
    progress: str = "auto",
    stop: StopRequest | None = None,
) -> EpochResult:
    """Runs one epoch of ``step_fn`` over batches (members, batch, D) and gives each member's mean losses.

    A member whose loss turns NaN or infinite is found on the device and reported at the next log
    point through ``on_failure(member, first bad step)``, which may stop it or end the run.
    ``on_log(interval means (members, 4), temperatures (members,), step)`` receives each log
    interval's mean losses. When ``stop`` fires (SIGINT, SIGTERM), the epoch ends at the next step
    boundary with ``Interrupted``.
    """
    sums: StepSums | None = None
    step = start_step = temperatures.start_step
    images, logged_sums, logged_images = 0, None, 0
    reported: set[int] = set()
    setup_before = getattr(step_fn, "setup_seconds", 0.0)
    started = time.perf_counter()
    bar = tqdm(
        total=num_batches,
        desc=description,
        disable=not shows_progress(progress),
        leave=False,
        dynamic_ncols=True,
    )

    def read_back() -> np.ndarray:
        totals, first_bad_steps = sums.read()
        for member, bad_step in enumerate(first_bad_steps):
            if bad_step is not None and member not in reported:
                reported.add(member)
                if on_failure is not None:
                    on_failure(member, bad_step + 1)
        return totals

    for x in batches:
        values = step_fn(x, temperatures.tensor(step))
        if sums is None:
            sums = StepSums(values.device, max(1, min(log_every, num_batches, 1024)), start_step, x.shape[0])
            logged_sums = np.zeros((x.shape[0], len(STEP_VALUES)))
        batch = x.shape[1]
        sums.add(values, batch)
        step += 1
        images += batch
        bar.update(1)
        pause("step")
        if stop:
            bar.close()
            name = signal.Signals(stop.signum).name
            raise Interrupted(stop.signum, f"stopped by {name} at step {step}", step)
        if step % log_every == 0:
            current = read_back()
            interval = (current - logged_sums) / (images - logged_images)
            logged_sums, logged_images = current, images
            taus = temperatures.value(step - 1)
            bar.set_postfix(loss=f"{np.nanmean(interval[:, 0]):.2f}", tau=f"{np.mean(taus):.3f}")
            if on_log is not None:
                on_log(interval, taus, step)
    bar.close()
    if sums is None:
        raise ConfigError("the training set is empty; check data.train_limit")
    totals = read_back()
    setup = getattr(step_fn, "setup_seconds", 0.0) - setup_before
    return EpochResult(
        means=totals / images,
        step=step,
        temperature=np.asarray(temperatures.value(step - 1)),
        seconds=time.perf_counter() - started - setup,
        images=images,
        setup_seconds=setup,
    )
