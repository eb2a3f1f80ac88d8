"""A run's records: metrics.jsonl, status.json, TensorBoard run names and HParams."""

from __future__ import annotations

import errno
import json
import logging
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from vae_gumbel.config import compose_settings
from vae_gumbel.errors import RecordsError
from vae_gumbel.grids import code_usage_image, encode_png, to_pixels
from vae_gumbel.run_folder import RunFolder, training_into
from vae_gumbel.tracking import (
    RunLog,
    SweepSummary,
    _open_sweeps,
    end_failed_sweep,
    how_runs_ended,
    hyperparameters,
    read_metrics,
    report_command,
    short_run_name,
    swept_keys,
    write_status,
)
from vae_gumbel.train import train


def test_long_override_lists_make_short_unique_tensorboard_run_names() -> None:
    assert short_run_name("optim.lr=0.0006466422717414558,estimator=straight_through") == (
        "optim.lr=0.0006466,estimator=straight_through"
    )
    long_a, long_b = ("x" * 300 + ",seed=1"), ("x" * 300 + ",seed=2")
    assert len(short_run_name(long_a)) == 200
    assert short_run_name(long_a) != short_run_name(long_b)
    assert short_run_name("data.root=/a/b") == "data.root=_a_b"


def test_the_keys_a_sweep_varies_are_read_again_when_its_record_changes(tmp_path: Path) -> None:
    record = tmp_path / "multirun.yaml"
    record.write_text("hydra:\n  overrides:\n    task: ['seed=0,1', 'optim.lr=0.001']\n")
    assert swept_keys(tmp_path) == {"seed"}
    record.write_text("hydra:\n  overrides:\n    task: ['seed=0,1', 'optim.lr=0.001,0.003']\n")
    assert swept_keys(tmp_path) == {"seed", "optim.lr"}
    assert swept_keys(tmp_path / "elsewhere") == set()


def test_the_report_command_groups_by_seed_where_a_sweep_in_the_folder_varies_the_seed(
    tmp_path: Path,
) -> None:
    for sweep, task in (
        ("seeds_0-1", "['seed=0,1', 'optim.lr=0.001,0.003']"),
        ("lr", "['optim.lr=0.01,0.1']"),
    ):
        (tmp_path / sweep).mkdir()
        (tmp_path / sweep / "multirun.yaml").write_text(f"hydra:\n  overrides:\n    task: {task}\n")
    assert report_command(tmp_path / "lr") == f"python -m vae_gumbel.report {tmp_path / 'lr'}"
    # A folder that holds both sweeps, as more seeds trained later beside the first ones.
    assert report_command(tmp_path) == f"python -m vae_gumbel.report {tmp_path} --group-by-seed"


def test_a_picture_reaches_tensorboard_as_add_image_writes_it(tmp_path: Path) -> None:
    pixels = to_pixels(code_usage_image(torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.3, 0.5]]), cell=4))
    run_log = RunLog(RunFolder(tmp_path / "ours"))
    run_log.log_png("code_usage", encode_png(pixels), step=3)
    run_log.close()
    with SummaryWriter(tmp_path / "torch") as writer:
        writer.add_image("code_usage", pixels, 3, dataformats="HWC")
    ours, torchs = (
        EventAccumulator(str(path)).Reload().Images("code_usage")
        for path in (RunFolder(tmp_path / "ours").tensorboard, tmp_path / "torch")
    )
    assert [(e.step, e.width, e.height, e.encoded_image_string) for e in ours] == [
        (e.step, e.width, e.height, e.encoded_image_string) for e in torchs
    ]


def test_hyperparameters_cover_every_scalar_setting_of_the_schema() -> None:
    values = hyperparameters(compose_settings(["optim=radam"]))
    assert values["optim.name"] == "radam" and values["optim.lr"] == 1e-3
    assert values["model.hidden"] == "[512, 256]" and values["resume"] == "null"
    assert values["objective.kl"] == "analytic" and values["estimator.rao_samples"] == 10
    assert {"trainer.epochs", "eval.final_iwae_samples", "temperature.every", "data.name"} <= set(values)


def test_a_torn_last_line_of_metrics_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n" + '{"epoch": 2, "te')
    assert read_metrics(path) == [{"epoch": 1}]


def test_tensorboard_shows_a_fresh_start_alone_and_a_resume_after_its_checkpoint(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)

    def log(values: dict[int, float], start_epoch: int = 0, start_step: int = 0) -> None:
        # TensorBoard reads a folder's event files in the order of their names, which begin with the
        # second they were opened in (then host, pid and a counter): a later start opens a later one.
        time.sleep(1.05)
        run_log = RunLog(folder, start_epoch, start_step)
        for step, loss in values.items():
            run_log.log_epoch({"epoch": step, "step": step, "test/loss": loss})
        run_log.close()

    def shown() -> list[tuple[int, float]]:
        scalars = EventAccumulator(str(folder.tensorboard)).Reload().Scalars("test/loss")
        return [(event.step, event.value) for event in scalars]

    log({1: 9.0, 2: 8.0, 3: 7.0})  # a run that wrote no checkpoint
    log({1: 5.0, 2: 4.0, 3: 3.0})  # started afresh in its folder
    assert shown() == [(1, 5.0), (2, 4.0), (3, 3.0)]
    log({3: 2.0}, start_epoch=2, start_step=2)  # resumed from its checkpoint of step 2
    assert shown() == [(1, 5.0), (2, 4.0), (3, 2.0)]


def test_a_damaged_line_before_the_last_is_an_error_and_not_the_end_of_the_records(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n\n" + "{garbage\n" + json.dumps({"epoch": 2}) + "\n")
    with pytest.raises(
        RecordsError, match=r"metrics.jsonl, line 3 of 4, is not a JSON record .*mend or delete"
    ):
        read_metrics(path)


def test_a_resume_over_damaged_records_leaves_them_as_they_are(compose_train, tmp_path: Path) -> None:
    train(compose_train("trainer.epochs=1"), tmp_path)
    metrics = RunFolder(tmp_path).metrics
    metrics.write_bytes(b"\xff\xfe not json\n" + metrics.read_bytes())
    damaged = metrics.read_bytes()
    with pytest.raises(RecordsError, match="line 1 of 2"):
        train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)
    assert metrics.read_bytes() == damaged


def test_a_finished_status_rewritten_with_the_same_content_is_left_untouched(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    write_status(folder, "completed", epoch=2)
    before = folder.status.stat().st_mtime_ns
    write_status(folder, "completed", epoch=2)
    assert folder.status.stat().st_mtime_ns == before
    write_status(folder, "failed", error="x")
    assert json.loads(folder.status.read_text()) == {"status": "failed", "error": "x"}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TensorBoardServer:
    """TensorBoard serving a log folder on 127.0.0.1, read through its HTTP API."""

    PORT_TAKEN = 255  # TensorBoard's exit status when its port was taken after free_port chose it

    def __init__(self, logdir: Path) -> None:
        import tempfile

        self.logdir = logdir
        self.output = Path(tempfile.mkdtemp(prefix="tensorboard-")) / "output.txt"
        self.starts = 0
        self.start()

    def start(self) -> None:
        """Starts TensorBoard on a port that was free a moment ago."""
        import subprocess
        import sys

        self.starts += 1
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir)]
        with self.output.open("w") as output:
            self.process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def check_running(self, path: str) -> None:
        """Restarts TensorBoard on another port if its port was taken (another test's connection
        may take it between free_port and TensorBoard's bind); else fails if it ended."""
        ended = self.process.poll()
        if ended == self.PORT_TAKEN and self.starts < 5:
            self.start()
            return
        last = self.output.read_text().strip().splitlines()[-1:] if ended is not None else ""
        assert ended is None, f"TensorBoard ended (status {ended}) before it gave {path}: {last}"

    def get(self, path: str, timeout: float = 60) -> object:
        """Gets ``path``; gives the answer."""
        return self.ask(path, None, lambda answer: True, timeout)

    def post(self, path: str, body: dict, ready=bool, timeout: float = 60) -> object:
        """Posts JSON to ``path`` until the answer is ``ready``; gives the answer."""
        return self.ask(path, body, ready, timeout)

    def ask(self, path: str, body: dict | None, ready, timeout: float) -> object:
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(
                self.url + path, data=data, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
                if ready(answer):
                    return answer
            except (OSError, ValueError):  # not up yet, or another program on a port taken meanwhile
                pass
            self.check_running(path)
            assert time.monotonic() < deadline, f"TensorBoard gave no {path} in {timeout} s"
            time.sleep(0.5)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.mark.slow
def test_tensorboard_shows_the_relaxation_gap_and_the_temperature_on_one_chart_each(
    mnist_root: Path, tmp_path: Path
) -> None:
    from tests.conftest import compose_config, tiny_run
    from vae_gumbel.train import train

    train(compose_config("train", [*tiny_run(mnist_root), "trainer.epochs=3"]), tmp_path)
    server = TensorBoardServer(RunFolder(tmp_path).tensorboard)
    try:
        runs = server.get("/data/runs")
        layout = server.get("/data/plugin/custom_scalars/layout")
        charts = {
            chart["title"]: chart["multiline"]["tag"]
            for category in layout["category"]
            for chart in category["chart"]
        }
        gap = next(tags for title, tags in charts.items() if title.startswith("loss per epoch"))
        assert [tag.strip("^$") for tag in gap] == [
            "train/loss_relaxed",
            "train/loss_unrelaxed",
            "val/loss",  # for runs that hold a validation set out
            "test/loss",
        ]
        assert [tag.strip("^$") for tag in charts["temperature"]] == ["temperature", "step/temperature"]
        series = server.get(f"/data/plugin/scalars/scalars?run={runs[0]}&tag=test/loss")
        assert [step for _, step, _ in series] == [6, 12, 18]
        assert series == [[pytest.approx(t), s, pytest.approx(v)] for t, s, v in series]
    finally:
        server.close()


def test_a_sweep_whose_hparams_summary_cannot_be_written_still_ends_with_its_commands(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from omegaconf import OmegaConf
    from tensorboard.summary.writer.record_writer import RecordWriter

    job = RunFolder(tmp_path / "0")
    job.config.parent.mkdir(parents=True)
    OmegaConf.save(compose_train(), job.config)  # a job of the sweep, as Hydra records it
    OmegaConf.save(OmegaConf.create([]), job.hydra_file("overrides.yaml"))

    def full(self, data: bytes) -> None:  # runs in TensorBoard's writer thread
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RecordWriter, "write", full)
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}}, "eval": {"final_iwae_samples": None}}
    )
    caplog.set_level(logging.INFO, logger="hydra")
    SweepSummary().on_multirun_end(config)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        f"could not write the sweep's HParams summary into {tmp_path / 'tensorboard'}: no space left on "
        "device; its runs are whole, and python -m vae_gumbel.report compares them"
    )
    assert messages[1].startswith(f"sweep done: {tmp_path}")


def test_a_sweep_with_a_run_whose_records_are_damaged_ends_with_its_summary_of_the_others(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from omegaconf import OmegaConf

    for job, lr in (("0", 1e-3), ("1", 3e-3)):
        folder = RunFolder(tmp_path / job)
        folder.config.parent.mkdir(parents=True)
        OmegaConf.save(compose_train(f"optim.lr={lr}"), folder.config)
        OmegaConf.save(OmegaConf.create([f"optim.lr={lr}"]), folder.hydra_file("overrides.yaml"))
        folder.metrics.write_text('{"epoch": 1, "test/loss": 100.0}\n' * 2)
    RunFolder(tmp_path / "1").metrics.write_text('{"epoch": 1, "test/lo\n{"epoch": 2, "test/loss": 99.0}\n')
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}}, "eval": {"final_iwae_samples": None}}
    )
    caplog.set_level(logging.INFO, logger="hydra")
    SweepSummary().on_multirun_end(config)  # the damaged run has no session to show; the sweep ends
    assert caplog.records[-1].getMessage().startswith(f"sweep done: {tmp_path}")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_sweep_that_ends_after_a_failed_job_says_how_each_unfinished_run_ended(tmp_path: Path) -> None:
    assert how_runs_ended(tmp_path) == "no runs: none of its jobs wrote a run folder"
    for job, status in (("0", "completed"), ("10", "failed"), ("2", "interrupted")):
        write_status(RunFolder(tmp_path / job), status)
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    (tmp_path / "3" / ".hydra" / "overrides.yaml").write_text("[]\n")  # queued on a cluster, not started
    assert how_runs_ended(tmp_path) == (
        "not completed: 3 of 4 runs (2: interrupted, 3: not started, 10: failed), "
        "each says why in its status.json"
    )
    for job in ("10", "2", "3"):
        write_status(RunFolder(tmp_path / job), "completed")
    # A job refused at its start (its last.pt broken, say) leaves a completed run as it stood.
    assert how_runs_ended(tmp_path) == (
        "every run says completed (4): each job that failed was refused at its start (above, the first "
        "one's error) and left the run in its folder as it stood"
    )
    for job in range(4, 16):  # a big sweep's line names the first ten and counts the rest
        write_status(RunFolder(tmp_path / str(job)), "failed")
    assert how_runs_ended(tmp_path).startswith("not completed: 12 of 15 runs (4: failed, 5: failed, ")
    assert "13: failed, and 2 more), each says why" in how_runs_ended(tmp_path)


def test_a_sweep_that_ends_after_failed_jobs_names_each_error_with_the_runs_that_failed_with_it(
    tmp_path: Path,
) -> None:
    write_status(RunFolder(tmp_path / "0"), "completed")
    for job, error in (("1", "ConfigError: optim.lr must be > 0"), ("2", "OutOfMemoryError: CUDA")):
        write_status(RunFolder(tmp_path / job), "failed", error=error)
    write_status(RunFolder(tmp_path / "3"), "failed", error="ConfigError: optim.lr must be > 0")
    write_status(RunFolder(tmp_path / "4"), "interrupted")
    assert how_runs_ended(tmp_path).splitlines() == [
        "not completed: 4 of 5 runs (1: failed, 2: failed, 3: failed, 4: interrupted), "
        "each says why in its status.json",
        "  1, 3: ConfigError: optim.lr must be > 0",  # Hydra shows the first failed job's error alone
        "  2: OutOfMemoryError: CUDA",
    ]
    for job in range(5, 20):  # many different errors: the first ten, and a count of the rest
        write_status(RunFolder(tmp_path / str(job)), "failed", error=f"error {job}")
    lines = how_runs_ended(tmp_path).splitlines()
    assert len(lines) == 12 and lines[-2] == "  12: error 12" and lines[-1] == "  and 7 more errors"


def test_a_sweep_that_failed_before_any_job_ran_ends_with_its_error_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path)}}, "eval": {"final_iwae_samples": None}}
    )
    caplog.set_level(logging.INFO, logger="hydra")
    _open_sweeps[:] = [config]  # the sweeper refused a job's value as it composed the batch
    end_failed_sweep()
    assert not caplog.records and not (tmp_path / "tensorboard").exists()
    write_status(RunFolder(tmp_path / "0"), "failed")  # a job ran and failed: the sweep's summary
    _open_sweeps[:] = [config]
    end_failed_sweep()
    assert caplog.records[-1].getMessage().startswith(f"sweep done: {tmp_path}\n  not completed: 1 of 1 runs")
    assert not _open_sweeps


def test_a_run_that_says_it_trains_after_its_process_is_gone_ended_killed_as_the_report_says(
    tmp_path: Path,
) -> None:
    job = RunFolder(tmp_path / "0")
    write_status(job, "training", pid=4242, host="node17")
    with training_into(job):  # as the process that trains it holds it, on this machine or the cluster
        assert how_runs_ended(tmp_path).startswith("not completed: 1 of 1 runs (0: training)")
    assert how_runs_ended(tmp_path).startswith("not completed: 1 of 1 runs (0: killed)")


def test_the_sweep_summary_takes_a_checked_jobs_settings_and_reads_a_changed_record_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from omegaconf import OmegaConf

    import vae_gumbel.config
    from tests.conftest import compose_config
    from vae_gumbel.config import validate
    from vae_gumbel.tracking import JobRecord, hyperparameters, recorded_settings

    cfg = compose_config("train", ["seed=3", "optim.lr=3e-4"])
    text = OmegaConf.to_yaml(cfg)
    checked = validate(cfg)
    # What the summary reads from the file is what the job checked.
    assert hyperparameters(recorded_settings(text)) == hyperparameters(checked)
    JobRecord({"config.yaml": text}).checked(checked)
    monkeypatch.setattr(vae_gumbel.config, "validate", lambda *args: pytest.fail("checked again"))
    assert recorded_settings(text) is checked
    with pytest.raises(pytest.fail.Exception, match="checked again"):
        recorded_settings(text.replace("seed: 3", "seed: 4"))  # a file changed since: read anew
