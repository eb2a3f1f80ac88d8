"""CPU threads under trainer.num_threads=auto: only the cores other processes leave free."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

import vae_gumbel.threads as threads_module
from vae_gumbel.config import compose_settings
from vae_gumbel.errors import ConfigError
from vae_gumbel.threads import CpuTimes, ThreadCount, others_busy_cores, threads_for, usable_cores


@pytest.fixture(autouse=True)
def keep_torchs_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_auto_is_the_default_and_a_fixed_count_or_null_are_the_alternatives() -> None:
    assert compose_settings().trainer.num_threads == "auto"
    assert compose_settings(["trainer.num_threads=3"]).trainer.num_threads == "3"
    assert compose_settings(["trainer.num_threads=null"]).trainer.num_threads is None
    with pytest.raises(ConfigError, match="trainer.num_threads must be auto, a number >= 1, or null"):
        compose_settings(["trainer.num_threads=0"])


def test_other_processes_time_is_the_machines_busy_time_without_our_own() -> None:
    assert others_busy_cores(CpuTimes(10.0, 4.0, 0.0), CpuTimes(13.0, 5.0, 2.0)) == 1.0


@pytest.mark.parametrize(
    "free, cores, threads",
    [
        (2.0, 2, 2),  # an idle machine: every core
        (1.8, 2, 2),  # a little background noise
        (2 - 0.67, 2, 1),  # one busy process, sharing its core with one of our threads
        (0.0, 2, 1),  # at least one
        (3.0, 4, 3),
    ],
)
def test_a_core_that_others_use_counts_as_taken(free: float, cores: int, threads: int) -> None:
    assert threads_for(free, cores) == threads


def test_auto_follows_the_load_from_epoch_to_epoch(monkeypatch) -> None:
    readings = iter(
        [
            CpuTimes(0.0, 0.0, 0.0),  # built: another process is busy on one core ...
            CpuTimes(1.0, 0.0, 1.0),
            CpuTimes(3.0, 1.0, 2.0),  # ... and still is during the first epoch
            CpuTimes(5.0, 3.0, 3.0),  # then it ends: only our own time
        ]
    )
    monkeypatch.setattr(threads_module, "cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    count = ThreadCount("auto", torch.device("cpu"))
    count.start()
    assert torch.get_num_threads() == 1
    count.adjust()
    assert torch.get_num_threads() == 1
    count.adjust()
    assert torch.get_num_threads() == 2


def test_a_fixed_count_and_cuda_runs_do_not_adapt() -> None:
    ThreadCount("1", torch.device("cpu")).start()
    assert torch.get_num_threads() == 1
    ThreadCount(None, torch.device("cpu")).start()
    assert torch.get_num_threads() == usable_cores()
    assert not ThreadCount("auto", torch.device("cuda")).adapts


def test_auto_leaves_a_busy_process_its_core() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # it is running
        ThreadCount("auto", torch.device("cpu")).start()
        assert torch.get_num_threads() <= max(1, usable_cores() - 1)
    finally:
        busy.kill()
        busy.wait()
