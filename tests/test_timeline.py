"""Where a run's time goes: the timeline of its phases, whole-process timing, the compile cache."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script, run_script, tiny_run
from vae_gumbel.compile_cache import CompileCache
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.timeline import Timeline, process_start


def test_a_phase_adds_up_its_wall_time_from_any_thread() -> None:
    timeline = Timeline()
    threads = [threading.Thread(target=timeline.add, args=("write", 0.25)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with timeline.phase("data"):
        pass
    assert list(timeline.seconds) == ["write", "data"]
    assert timeline.seconds["write"] == 2.0 and 0 <= timeline.seconds["data"] < 0.1
    assert "| write | 2.00 | 50% |" in timeline.table(total=4.0)


def test_the_process_start_is_read_to_a_clock_tick() -> None:
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before = time.time()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; from vae_gumbel.timeline import process_start; print(process_start(), time.time())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    started, child_now = map(float, child.stdout.split())
    # Not before the parent spawned it (but for the tick it is rounded down to), nor after it ran.
    assert before - 2 * tick <= started <= child_now


def test_each_job_starts_its_timeline_afresh_and_only_the_first_counts_the_start_up() -> None:
    timeline = Timeline()
    assert timeline.total() is None
    assert timeline.start() is (process_start() is not None)  # the process's first job
    assert timeline.total() >= 0
    timeline.add("train: steps", 3.0)
    assert timeline.start() is False  # a later job of the same process: from now, from nothing
    assert timeline.seconds == {} and 0 <= timeline.total() < 1


def test_the_process_start_is_before_now() -> None:
    started = process_start()
    assert started is not None and 0 < time.time() - started < 3600


def test_time_to_result_times_the_tutorial_on_the_runs_data_and_checks_it_first(
    tmp_path: Path, capsys
) -> None:
    script = load_script("time_to_result")
    assert script.data_root_of(["trainer.epochs=1", "data.root=/a", "data.root=/b"]) == "/b"
    assert script.data_root_of(["trainer.epochs=1"]) == "data"
    not_a_folder = tmp_path / "mnist"
    not_a_folder.write_text("")
    out = tmp_path / "timing"
    arguments = ["--tutorial-epochs", "1", "--out", str(out), f"data.root={not_a_folder}"]
    with pytest.raises(SystemExit) as refused:  # before any run, which would take minutes
        run_script("time_to_result.py", *arguments)
    assert refused.value.code != 0 and not out.exists()
    assert f"the data root {not_a_folder} is a file" in capsys.readouterr().err


def test_time_to_result_times_whole_runs_and_reads_their_timelines(
    tmp_path: Path, mnist_root: Path, capsys
) -> None:
    out = tmp_path / "timing"
    arguments = ["--repeats", "1", "--warm-up", "1", "--out", str(out), *tiny_run(mnist_root)]
    with pytest.raises(SystemExit) as refused:  # a warm-up would fill the caches --cold empties
        run_script("time_to_result.py", "--cold", *arguments)
    assert refused.value.code == 2 and not out.exists()
    run_script("time_to_result.py", *arguments)
    printed = capsys.readouterr().out
    (out,) = out.iterdir()  # each timing gets its own dated folder
    report = json.loads((out / "time_to_result.json").read_text())
    # The warm-up ran first, untimed: one wall time, from the run after it.
    assert json.loads(RunFolder(out / "warm-up0").status.read_text())["status"] == "completed"
    assert report["warm_up"] == 1 and len(report["walls"]["train"]) == 1
    assert "the compile caches filled by 1 untimed run(s) first" in printed
    phases = report["phases_s"]
    for phase in (
        "start: interpreter and imports",
        "data: read, verify, put on the device",
        "train: steps",
        "evaluate: test ELBO",
        "checkpoints: write (background)",
        "exit",
    ):
        assert phases[phase] >= 0, phase
    timeline = json.loads(RunFolder(out / "run0").timeline.read_text())
    assert 0 < timeline["phases"]["train: steps"] < timeline["total_seconds"] < report["wall_s"]["train"]
    assert "| train: steps |" in printed and "whole process:" in printed


def test_the_compile_cache_points_inductor_at_its_folder_and_saves_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "restored after the test")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    saved = []
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: saved.append(1) or (b"code", None))
    cache = CompileCache(str(tmp_path / "cache"), torch.device("cpu"))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    cache.save()
    cache.save()
    assert saved == [1] and cache.artifacts.read_bytes() == b"code"
    assert [path.name for path in cache.folder.iterdir()] == [cache.artifacts.name]  # no partial file left


def test_a_compile_cache_that_cannot_be_written_costs_a_warning_not_the_run(
    tmp_path: Path, caplog, monkeypatch
) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "restored after the test")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"code", None))
    (tmp_path / "taken").write_text("a file where the cache folder would go")
    with caplog.at_level(logging.WARNING, logger="vae_gumbel.train"):
        unmade = CompileCache(str(tmp_path / "taken" / "cache"), torch.device("cpu"))
        unmade.load()
        unmade.save()
    assert "cannot use the compile cache" in caplog.text and "torch's own cache" in caplog.text
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ  # inductor keeps a cache it can write
    cache = CompileCache(str(tmp_path / "cache"), torch.device("cpu"))
    cache.artifacts.mkdir()  # the save fails, as on a full disk or over a quota
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vae_gumbel.train"):
        cache.save()
    assert "could not save the compile cache" in caplog.text and "training goes on" in caplog.text
    assert [path.name for path in cache.folder.iterdir()] == [cache.artifacts.name]  # no partial file left


def test_a_damaged_compile_cache_costs_a_recompile_not_the_run(tmp_path: Path, caplog, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cache = CompileCache(str(tmp_path), torch.device("cpu"))
    cache.artifacts.write_bytes(b"not a cache")
    with caplog.at_level(logging.WARNING, logger="vae_gumbel.train"):
        cache.load()
    assert "could not read the compile cache" in caplog.text and "Traceback" not in caplog.text


def test_a_timeline_that_cannot_be_written_is_a_warning_and_its_table_still_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vae_gumbel.train import write_timeline

    (tmp_path / "timeline.json").mkdir()  # a folder where the file belongs
    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    write_timeline(tmp_path / "timeline.json")
    warning, table = (record.getMessage() for record in caplog.records)
    assert warning == f"could not write the timeline {tmp_path / 'timeline.json'}: is a directory"
    assert table.startswith(f"where the time went ({tmp_path / 'timeline.json'}):")
