"""CPU threads under trainer.num_threads=auto: only the cores other processes leave free."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vae_gumbel.threads as threads_module
from vae_gumbel.config import compose_settings
from vae_gumbel.errors import ConfigError
from vae_gumbel.threads import (
    FIRST_LOOK_S,
    CpuTimes,
    ThreadCount,
    busy_ticks,
    cgroup_cpu_quota,
    cpu_times,
    others_busy_cores,
    threads_for,
    usable_cores,
)


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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_child_process_we_waited_for_counts_as_our_own_time_not_another_processs() -> None:
    # The first run fetches its data with npm: that work is the run's, not a neighbour's load.
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    before = cpu_times()
    subprocess.run([sys.executable, "-c", spin], check=True)
    after = cpu_times()
    assert after.own - before.own >= 0.5


# /proc/stat of a 4-CPU machine: user nice system idle iowait irq softirq steal (clock ticks).
PROC_STAT = """cpu  460 0 40 300 0 0 0 0
cpu0 100 0 10 50 0 0 0 0
cpu1 120 0 10 30 0 0 0 0
cpu2 200 0 10 0 0 0 0 0
cpu3 40 0 10 220 0 0 0 0
intr 12345
"""


def test_only_the_cpus_a_run_may_use_count_as_busy() -> None:
    assert busy_ticks(PROC_STAT) == 500  # every CPU
    assert busy_ticks(PROC_STAT, {0, 1}) == 240  # a SLURM job's two CPUs: the others' jobs are not its load
    assert busy_ticks(PROC_STAT, {3}) == 50
    assert busy_ticks(PROC_STAT, {7}) is None


def write_cgroup(root: Path, memberships: str, files: dict[str, str]) -> None:
    """Lays out /proc/self/cgroup and cgroup files under ``root``, as cgroup_cpu_quota reads them."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(memberships)
    for name, text in files.items():
        (root / "sys/fs/cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "sys/fs/cgroup" / name).write_text(text)


@pytest.mark.parametrize(
    ("memberships", "files", "quota"),
    [
        ("0::/\n", {}, None),  # no limit anywhere
        ("0::/job\n", {"job/cpu.max": "max 100000\n"}, None),
        ("0::/pod/box\n", {"pod/cpu.max": "250000 100000\n", "pod/box/cpu.max": "max 100000\n"}, 2.5),
        ("0::/pod/box\n", {"pod/cpu.max": "400000 100000\n", "pod/box/cpu.max": "150000 100000\n"}, 1.5),
        (
            "2:cpuacct,cpu:/docker/abc\n1:memory:/docker/abc\n",
            {
                "cpuacct,cpu/docker/abc/cpu.cfs_quota_us": "300000\n",
                "cpuacct,cpu/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            3.0,
        ),
        (
            "4:cpu:/docker/abc\n",  # a container that sees its own cgroup at the mount (no namespace)
            {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"},
            0.5,
        ),
        ("4:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ("not a cgroup line\n0::/box\n", {"box/cpu.max": "200000 100000\n"}, 2.0),
        ("0::/box\n", {"box/cpu.max": "garbled\n"}, None),
    ],
    ids=["v2-none", "v2-max", "v2-parent", "v2-tightest", "v1", "v1-at-mount", "v1-none", "odd", "garbled"],
)
def test_a_cgroup_cpu_quota_is_read_as_cores_worth(
    tmp_path: Path, memberships: str, files: dict[str, str], quota: float | None
) -> None:
    write_cgroup(tmp_path, memberships, files)
    assert cgroup_cpu_quota(tmp_path) == quota


@pytest.mark.parametrize(("quota", "cores"), [(None, 8), (2.0, 2), (1.5, 2), (0.5, 1), (32.0, 8)])
def test_a_quota_caps_the_cores_a_run_may_use(monkeypatch, quota: float | None, cores: int) -> None:
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: set(range(8)))
    monkeypatch.setattr(threads_module, "cgroup_cpu_quota", lambda: quota)
    assert usable_cores() == cores
    ThreadCount(None, torch.device("cpu"))  # null: every core it may use
    assert torch.get_num_threads() == cores


def test_auto_starts_no_more_threads_than_a_quota_allows(monkeypatch) -> None:
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 1)
    torch.set_num_threads(2)  # torch's own count: the machine's cores
    ThreadCount("auto", torch.device("cpu"))
    assert torch.get_num_threads() == 1


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
    monkeypatch.setattr(threads_module, "cpu_times", lambda cpus: next(readings))
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: {0, 1})
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    count = ThreadCount("auto", torch.device("cpu"))
    count.first_look()
    assert torch.get_num_threads() == 1
    count.adjust()
    assert torch.get_num_threads() == 1
    count.adjust()
    assert torch.get_num_threads() == 2


def test_the_first_look_does_not_wait_for_its_quarter_second() -> None:
    count = ThreadCount("auto", torch.device("cpu"))
    started = time.monotonic()
    count.first_look()  # right after the count is made: too early to look, and nothing to wait for
    assert time.monotonic() - started < FIRST_LOOK_S / 2


def test_the_first_look_is_taken_once_at_the_first_log_point_after_its_quarter_second(monkeypatch) -> None:
    readings = iter(
        [
            CpuTimes(0.0, 0.0, 0.0),  # the count is made: another process is busy on one core ...
            CpuTimes(0.1, 0.0, 0.1),  # ... too short a look to say so: the run goes on
            CpuTimes(0.5, 0.3, 0.4),  # its first log point
        ]
    )
    monkeypatch.setattr(threads_module, "cpu_times", lambda cpus: next(readings))
    monkeypatch.setattr(threads_module, "usable_cpus", lambda: {0, 1})
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    count = ThreadCount("auto", torch.device("cpu"))
    count.first_look()
    assert torch.get_num_threads() == 2
    count.first_look()
    assert torch.get_num_threads() == 1
    count.first_look()  # taken: later looks are the epochs' (no reading is left to take)


def test_a_fixed_count_and_cuda_runs_do_not_adapt() -> None:
    ThreadCount("1", torch.device("cpu")).first_look()
    assert torch.get_num_threads() == 1
    ThreadCount(None, torch.device("cpu")).first_look()
    assert torch.get_num_threads() == usable_cores()
    assert not ThreadCount("auto", torch.device("cuda")).adapts


def test_a_fixed_count_above_the_cores_a_run_may_use_is_kept_with_a_warning(
    monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    ThreadCount("2", torch.device("cpu"))
    assert not caplog.records
    # Kept, for bit-identical reruns of a run made on a larger machine, but it may be a slip.
    ThreadCount("16", torch.device("cpu"))
    assert torch.get_num_threads() == 16
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.getMessage().startswith(
        "trainer.num_threads=16 starts more threads than the 2 cores this process may use"
    )
    ThreadCount("16", torch.device("cuda"))  # a GPU run's threads only feed the GPU
    assert len(caplog.records) == 1


def test_auto_leaves_a_busy_process_its_core() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # it is running
        count = ThreadCount("auto", torch.device("cpu"))
        time.sleep(FIRST_LOOK_S)  # the run loads its data, builds its model, takes its first steps
        count.first_look()
        assert torch.get_num_threads() <= max(1, usable_cores() - 1)
    finally:
        busy.kill()
        busy.wait()
