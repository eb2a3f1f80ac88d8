"""The scripts beside the package: figures, a run's curves, the step's profile, multirun timing."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import (
    REPO,
    assert_one_line_error,
    compose_config,
    documented_command_lines,
    load_script,
    run_python,
    run_script,
    tiny_run,
)
from tests.test_interrupts import start, wait_for
from vae_gumbel.provenance import version_line
from vae_gumbel.run_folder import TIMELINES, RunFolder
from vae_gumbel.seeds import Estimate
from vae_gumbel.timeline import EPOCH_EXTRAS, HYDRA_PHASES, SWEEPER_CHECKS
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train

pytestmark = pytest.mark.slow


def test_figure_script_runs_headless_and_writes_every_figure(tmp_path: Path) -> None:
    result = run_python(str(REPO / "scripts/make_figures.py"), "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("gumbel_distribution", "gumbel_max", "softmax_temperature", "gumbel_softmax"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name


def test_plot_run_draws_each_runs_curves_into_its_own_folder(
    mnist_root: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "sweep" / "0"
    train(compose_config("train", [*tiny_run(mnist_root), "trainer.epochs=2"]), run_dir)
    assert run_script("plot_run.py", str(run_dir)) == 0
    assert (run_dir / "curves.png").stat().st_size > 10_000
    assert f"wrote {run_dir / 'curves.png'}" in capsys.readouterr().out


def test_plot_run_refuses_a_folder_without_records_and_an_output_it_cannot_write(
    mnist_root: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file where a folder would go")
    run_dir = tmp_path / "run"
    train(compose_config("train", tiny_run(mnist_root)), run_dir)
    for arguments, says in (
        ([str(tmp_path / "nowhere")], "nowhere has no metrics.jsonl"),
        ([str(run_dir), "--out", str(tmp_path / "taken" / "curves.png")], "taken is a file, not a folder"),
        ([str(run_dir), "--out", str(tmp_path / "curves.jpg")], "--out must be the path of a file ending in"),
    ):
        result = run_python(str(REPO / "scripts/plot_run.py"), *arguments, cwd=tmp_path)
        assert_one_line_error(result, 2, says)
    result = run_python(str(REPO / "scripts/make_figures.py"), "--out", str(tmp_path / "taken"), cwd=tmp_path)
    assert_one_line_error(result, 2, "taken is a file, not a folder; give --out a place you can write to")


@pytest.mark.parametrize(
    "script", ["time_to_result.py", "busy_machine.py", "time_multirun.py", "reinmax2023.py"]
)
def test_a_script_refuses_an_output_place_it_cannot_write_before_it_measures_or_trains(
    script: str, tmp_path: Path, capsys
) -> None:
    (tmp_path / "taken").write_text("a file where a folder would go")
    with pytest.raises(SystemExit) as ended:
        run_script(script, "--out", str(tmp_path / "taken"))
    assert ended.value.code == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'taken'} is a file, not a folder; give --out a place you can write to\n"
    )


@pytest.mark.parametrize(
    ("script", "count", "says"),
    [
        ("time_to_result.py", ["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
        ("time_multirun.py", ["--jobs", "0"], "argument --jobs: must be >= 1, got 0"),
        ("time_multirun.py", ["--joblib-jobs", "0"], "argument --joblib-jobs: must be >= 1, got 0"),
        ("gpu_figures.py", ["--seeds", "-2"], "argument --seeds: must be >= 1, got -2"),
        (
            "busy_machine.py",
            ["--settings", "auto", "data.train_limit=2000"],
            "argument --settings: must be auto, null or a number >= 1, got 'data.train_limit=2000' "
            "(put training overrides after --)",
        ),
        ("busy_machine.py", ["--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
    ],
)
def test_a_script_refuses_a_count_it_cannot_run_in_one_line(
    script: str, count: list[str], says: str, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as ended:
        run_script(script, *count, "--out", str(tmp_path / "out"))
    assert ended.value.code == 2 and capsys.readouterr().err.endswith(f"error: {says}\n")
    assert not (tmp_path / "out").exists()


def test_profile_script_prints_the_top_operators(tmp_path: Path) -> None:
    result = run_python(
        str(REPO / "scripts/profile_step.py"),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--steps",
        "3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "aten::addmm" in result.stdout and "operator calls per step:" in result.stdout


def test_profile_script_profiles_the_step_of_a_stack(tmp_path: Path) -> None:
    result = run_python(
        str(REPO / "scripts/profile_step.py"),
        *("--device", "cpu", "--batch-size", "8", "--steps", "3", "--members", "3"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "of 3 member(s)" in result.stdout and "aten::baddbmm" in result.stdout  # the stacked matmul


def test_multirun_timing_compares_launchers_on_one_sweep(tmp_path: Path, mnist_root: Path, capsys) -> None:
    out = tmp_path / "timing"
    run_script(
        "time_multirun.py",
        *("--sweep", "seed=0,1", "--ways", "single", "stacked", "--out", str(out)),
        *tiny_run(mnist_root),
        "trainer.epochs=2",
    )
    (out,) = out.iterdir()  # each timing gets its own dated folder
    report = json.loads((out / "multirun.json").read_text())
    assert report["jobs"] == 2 and set(report["ways"]) == {"single", "stacked"}
    assert report["device"].startswith("CPU")  # the runs' trainer.device=cpu, even beside a GPU
    ways = report["ways"]
    assert (ways["single"]["runs"], ways["stacked"]["runs"]) == (1, 2)
    assert ways["stacked"]["vs_single"] == pytest.approx(
        ways["stacked"]["seconds"] / ways["single"]["seconds"]
    )
    for run in (out / "single", out / "stacked" / "0", out / "stacked" / "1"):
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
    # The extras per member and epoch: the stack's timeline over its 2 members x 2 epochs.
    (stack_timeline,) = (out / "stacked").glob(TIMELINES)
    phases = json.loads(stack_timeline.read_text())["phases"]
    extras = sum(phases[phase] for phase in EPOCH_EXTRAS)
    assert ways["stacked"]["extras_per_member_epoch_s"] == pytest.approx(extras / 4)
    assert ways["single"]["extras_per_member_epoch_s"] > 0
    # What Hydra spent per job before training: the sweeper's check and the launcher's preparation.
    hydra = sum(phases.get(phase, 0.0) for phase in HYDRA_PHASES)
    assert phases[SWEEPER_CHECKS] > 0
    assert ways["stacked"]["hydra_per_job_s"] == pytest.approx(hydra / 2)
    assert ways["single"]["hydra_per_job_s"] > 0
    assert "| stacked | 2 |" in capsys.readouterr().out


def test_multirun_timing_stops_at_a_failing_run(tmp_path: Path, mnist_root: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_script(
            "time_multirun.py",
            *("--jobs", "2", "--ways", "single", "joblib", "--out", str(tmp_path / "timing")),
            *tiny_run(mnist_root),
            "temperature.initial=-1",
        )
    assert "error: the single run failed" in str(stopped.value.code)
    assert not list((tmp_path / "timing").rglob("multirun.json"))


MAINS = [
    *(f"scripts/{path.name}" for path in sorted((REPO / "scripts").glob("*.py"))),
    "vae_gumbel.datasets",
    "vae_gumbel.report",
    "vae_gumbel.tools.baseline",
    "vae_gumbel.tools.benchmark",
]


class Parsed(Exception):
    """Raised instead of parsing: the parser as the command built it."""


@pytest.mark.parametrize("path", MAINS)
def test_every_command_line_option_says_what_it_does(path: str, monkeypatch) -> None:
    import argparse
    import importlib.util

    def capture(parser: argparse.ArgumentParser, *args, **kwargs):
        raise Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    if path.endswith(".py"):  # a script, not a module of the package
        spec = importlib.util.spec_from_file_location(f"main_of_{Path(path).stem}", REPO / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(path)
    with pytest.raises(Parsed) as parsed:
        module.main([])
    parser = parsed.value.args[0]
    assert parser.description
    silent = [action.dest for action in parser._actions if not action.help]
    assert not silent, f"{path}: options without help text: {silent}"


# The documented commands that read their command line with argparse (those of Hydra are checked in
# tests/test_config.py), and the module whose ``main`` reads it.
ARGPARSE_MODULES = {
    "vae_gumbel.report": "vae_gumbel.report",
    "vae_gumbel.datasets": "vae_gumbel.datasets",
    "vae_gumbel.benchmark": "vae_gumbel.tools.benchmark",
}


def documented_argparse_commands() -> list[tuple[str, list[str]]]:
    """Gives (program, arguments) of every ``python scripts/NAME.py`` command, and of every
    ``python -m`` command of ARGPARSE_MODULES, in the code blocks of the README and docs/."""
    commands = []
    for words in (shlex.split(line, comments=True) for line in documented_command_lines()):
        if words[1].startswith("scripts/") and words[1].endswith(".py"):
            commands.append((words[1], words[2:]))
        elif words[1] == "-m" and words[2] in ARGPARSE_MODULES:
            commands.append((words[2], words[3:]))
    return commands


def test_every_documented_command_line_of_a_script_or_tool_is_one_it_takes(monkeypatch) -> None:
    import argparse
    import importlib

    commands = documented_argparse_commands()
    programs = {program for program, _ in commands}
    assert programs >= {"scripts/reinmax2023.py", "scripts/gpu_figures.py", *ARGPARSE_MODULES}, programs
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser: argparse.ArgumentParser, args=None, namespace=None):
        raise Parsed(parse(parser, args, namespace))  # argparse's own error ends the test otherwise

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for program, arguments in commands:
        if program.startswith("scripts/"):
            main = load_script(Path(program).stem).main
        else:
            main = importlib.import_module(ARGPARSE_MODULES[program]).main
        with pytest.raises(Parsed):
            main(arguments)


def test_the_reinmax_comparison_trains_each_estimator_with_its_papers_settings_and_summarises_seeds(
    tmp_path: Path, mnist_root: Path, capsys
) -> None:
    out = tmp_path / "reinmax"
    arguments = ["--configurations", "8x4", "--estimators", "gumbel_rao", "softmax_straight_through"]
    run_script("reinmax2023.py", *arguments, "--seeds", "2", "--out", str(out), "--dry-run")
    printed = capsys.readouterr().out.splitlines()
    assert [line.startswith("python -m vae_gumbel.train --multirun") for line in printed] == [True, True]
    words = subprocess.run(["bash", "-c", "printf '%s\\n' " + printed[0]], capture_output=True, text=True)
    assert "hydra.sweep.subdir=${seed}" in words.stdout.splitlines() and not out.exists()  # pasted in a shell
    run_script("reinmax2023.py", *arguments, "--seeds", "2", "--out", str(out), *tiny_run(mnist_root))
    expected = {  # the papers' settings for 8x4 (categories x variables)
        "gumbel_rao": ("adam", 5e-4, 0.5, 100),
        "softmax_straight_through": ("adam", 1e-3, 1.3, 10),
    }
    rows = {row["estimator"]: row for row in csv_rows(out / "reinmax2023.csv")}
    for estimator, (optimizer, lr, tau, rao_samples) in expected.items():
        last = []
        for seed in range(2):
            folder = RunFolder(out / "8x4" / estimator / str(seed))
            config = OmegaConf.load(folder.config)
            assert (config.model.categorical_dim, config.model.latent_dim, config.seed) == (8, 4, seed)
            assert (config.optim.name, config.optim.lr, config.temperature.initial) == (optimizer, lr, tau)
            assert config.estimator.rao_samples == rao_samples
            last.append(read_metrics(folder.metrics)[-1])
        row = rows[estimator]
        assert row["test negative ELBO n"] == "2"
        assert float(row["test negative ELBO mean"]) == pytest.approx(sum(r["test/loss"] for r in last) / 2)
        assert float(row["train loss (last epoch) mean"]) == pytest.approx(
            sum(r["train/loss_unrelaxed"] for r in last) / 2
        )
    assert "| 8x4 | `gumbel_rao`" in (out / "reinmax2023.md").read_text()
    runs = csv_rows(out / "runs.csv")  # every run, for the CSV kept in docs/
    assert sorted((row["job"], row["status"]) for row in runs) == [
        (f"8x4/{estimator}/{seed}", "completed") for estimator in sorted(expected) for seed in range(2)
    ]
    # Each seed stack a submitted job (here a local process), one sweep waiting at a time: the same table.
    submitted = tmp_path / "submitted"
    launcher = ["--launcher", "stacked_submitit_local", "--at-once", "1", "--out", str(submitted)]
    run_script("reinmax2023.py", *arguments, "--seeds", "2", *launcher, *tiny_run(mnist_root))
    said = (submitted / "8x4" / "gumbel_rao.log").read_text()  # the sweep's own output
    assert "2 jobs as 1 stack of at most 64 models, a submitted job each" in said
    assert csv_rows(submitted / "reinmax2023.csv") == csv_rows(out / "reinmax2023.csv")


def test_later_seeds_join_a_reinmax_comparison_in_folders_named_for_them(
    tmp_path: Path, mnist_root: Path
) -> None:
    out = tmp_path / "reinmax"
    arguments = ["--configurations", "8x4", "--estimators", "reinmax", "--out", str(out)]
    run_script("reinmax2023.py", *arguments, "--seeds", "2", *tiny_run(mnist_root))
    sweep = out / "8x4" / "reinmax"
    first = {seed: (sweep / str(seed) / "metrics.jsonl").read_text() for seed in range(2)}
    run_script("reinmax2023.py", *arguments, "--seeds", "2", "--first-seed", "3", *tiny_run(mnist_root))
    assert sorted(run.parent.name for run in sweep.glob("*/metrics.jsonl")) == ["0", "1", "3", "4"]
    for seed in (0, 1, 3, 4):
        assert OmegaConf.load(RunFolder(sweep / str(seed)).config).seed == seed
    assert {seed: (sweep / str(seed) / "metrics.jsonl").read_text() for seed in range(2)} == first
    (row,) = csv_rows(out / "reinmax2023.csv")
    assert row["test negative ELBO n"] == "4"


def test_a_ctrl_c_to_the_reinmax_comparison_stops_its_sweeps_and_says_how_to_continue_them(
    tmp_path: Path, mnist_root: Path
) -> None:
    out = tmp_path / "reinmax"
    estimators = ["reinmax", "softmax_straight_through", "straight_through"]
    arguments = ["--configurations", "8x4", "--estimators", *estimators, "--seeds", "2", "--out", str(out)]
    command = [str(REPO / "scripts/reinmax2023.py"), *arguments, "--at-once", "2", "--"]
    command += [*tiny_run(mnist_root), "trainer.epochs=4"]
    # Epochs of 100 steps of 0.1 s: when the later sweep has ended its first epoch, neither has ended
    # its last, even on a machine busy enough to start one sweep half a minute after the other.
    process = start(command, tmp_path, pause="step=0.1", new_session=True)  # as a terminal starts it
    try:
        firsts = [RunFolder(out / "8x4" / estimator / "0").metrics for estimator in estimators[:2]]
        wait_for(lambda: all(metrics.is_file() and read_metrics(metrics) for metrics in firsts), process)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the script's process group
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert_one_line_error(
        subprocess.CompletedProcess(command, process.returncode, stdout, stderr), 130, "interrupted by SIGINT"
    )
    for estimator in estimators[:2]:  # both sweeps got the signal once: each run kept its last epoch
        for seed in range(2):
            status = json.loads(RunFolder(out / "8x4" / estimator / str(seed)).status.read_text())
            assert status["status"] == "interrupted" and 1 <= status["epoch"] < 4, status
    assert not (out / "8x4" / "straight_through").exists()  # nothing new started
    continued = shlex.split(stderr.split("continue the comparison with: ")[1])
    assert continued[0] == "python" and continued[-1] == "resume=last"
    result = run_python(*continued[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = csv_rows(out / "reinmax2023.csv")
    assert sorted((row["estimator"], row["epochs"], row["test negative ELBO n"]) for row in rows) == [
        (estimator, "4", "2") for estimator in sorted(estimators)
    ]


def process_state(pid: int) -> str:
    """Gives a process's state letter from /proc: T when stopped, S or R when it goes on."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_ctrl_z_to_the_reinmax_comparison_suspends_its_sweeps_with_it_until_it_goes_on(
    tmp_path: Path,
) -> None:
    program = tmp_path / "holds_a_sweep.py"  # the comparison, holding one sweep in a session of its own
    program.write_text(
        "import importlib.util, subprocess, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(REPO / 'scripts' / 'reinmax2023.py')!r})\n"
        "reinmax2023 = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(reinmax2023)\n"
        "waits = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "sweep = subprocess.Popen(waits, start_new_session=True)\n"
        "with reinmax2023.passing_on_stops({'sweep': sweep}):\n"
        "    print(sweep.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    # A process group of its own in this session, as a shell starts a job.
    script = subprocess.Popen(
        [sys.executable, str(program)], stdout=subprocess.PIPE, text=True, process_group=0
    )
    sweep = int(script.stdout.readline())
    try:

        def states() -> tuple[str, str]:
            return process_state(script.pid), process_state(sweep)

        os.killpg(script.pid, signal.SIGTSTP)  # Ctrl-Z: the terminal signals the script's process group
        wait_for(lambda: states() == ("T", "T"), script, timeout=30)
        os.killpg(script.pid, signal.SIGCONT)  # fg
        wait_for(lambda: "T" not in states(), script, timeout=30)
    finally:
        for pid in (sweep, script.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        script.wait()


def test_a_ctrl_c_to_a_timing_script_ends_it_in_one_line_after_its_runs_say_how_to_continue(
    tmp_path: Path, mnist_root: Path
) -> None:
    out = tmp_path / "timing"
    command = [str(REPO / "scripts/time_multirun.py"), "--jobs", "1", "--ways", "single", "--out", str(out)]
    # Each checkpoint write takes a second: the script must wait for its run to finish its own.
    pause = "step=0.1,checkpoint=1"
    process = start([*command, "--", *tiny_run(mnist_root), "trainer.epochs=3"], tmp_path, pause, True)
    try:
        wait_for(lambda: any(out.rglob("metrics.jsonl")), process)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the script and its run
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    run_says, script_says = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "continue with: python -m vae_gumbel.train" in run_says  # the run's own line, on the console
    assert script_says == "error: interrupted by SIGINT: the timing stopped before it wrote its results"
    assert not list(out.rglob("multirun.json"))
    (status,) = out.rglob("status.json")  # the run stopped as a run does, its epoch kept
    assert json.loads(status.read_text())["status"] == "interrupted"


def test_every_script_names_the_versions_it_runs_with(tmp_path: Path) -> None:
    for script in sorted((REPO / "scripts").glob("*.py")):
        result = run_python(str(script), "--version", cwd=tmp_path)
        assert (result.returncode, result.stdout.strip()) == (0, version_line()), script.name


def test_the_gpu_figures_run_each_step_in_order_and_skip_what_the_budget_cannot_hold(
    tmp_path: Path, mnist_root: Path, capsys
) -> None:
    fixture = [o for o in tiny_run(mnist_root) if not o.startswith("data.root=")]
    arguments = ["--data-root", str(mnist_root), "--seeds", "1", *fixture]
    run_script("gpu_figures.py", "--out", str(tmp_path / "gpu"), "--steps", "sweep", "cold", *arguments)
    (out,) = (tmp_path / "gpu").iterdir()  # each measurement gets its own dated folder
    summary = (out / "summary.md").read_text()
    assert version_line() in summary.splitlines()[2]  # what measured them, in the header
    # In the steps' own order, not the command line's; each with its table.
    assert summary.index("## cold: exit status 0") < summary.index("## sweep: exit status 0")
    assert "| train: steps |" in summary and "| stacked | 8 |" in summary
    (sweep,) = (out / "sweep").glob("*/multirun.json")
    assert json.loads(sweep.read_text())["jobs"] == 8  # 1 seed x 8 settings
    assert "--sweep=optim.lr=3e-4,1e-3" in summary
    # Under 30 s of budget left, a step is skipped and only named.
    run_script("gpu_figures.py", "--out", str(tmp_path / "short"), "--budget", "20", *arguments)
    (short,) = (tmp_path / "short").iterdir()
    summary = (short / "summary.md").read_text()
    assert summary.count("skipped, 20 s of the budget left") == 7 and not list(short.glob("*.log"))
    assert "## joblib: skipped" in capsys.readouterr().out


def test_the_gpu_figures_run_the_reinmax_comparison_only_when_asked(
    tmp_path: Path, mnist_root: Path, capsys
) -> None:
    fixture = [o for o in tiny_run(mnist_root) if not o.startswith("data.root=")]
    arguments = ["--data-root", str(mnist_root), "--reinmax-seeds", "1", *fixture]
    run_script("gpu_figures.py", "--out", str(tmp_path / "gpu"), "--steps", "reinmax", *arguments)
    (out,) = (tmp_path / "gpu").iterdir()
    summary = (out / "summary.md").read_text()
    assert "## reinmax: exit status 0" in summary and "--at-once 3" in summary
    assert "| 10x30 | `reinmax` (ReinMax (their code: reinmax))" in summary  # the table, in the summary
    rows = csv_rows(out / "reinmax" / "reinmax2023.csv")
    assert len(rows) == 6 and {row["test negative ELBO n"] for row in rows} == {"1"}
    # A plain run leaves it out: it is a visit's work of its own.
    load_gpu_figures().main(["--out", str(tmp_path / "short"), "--budget", "20", *arguments])
    (short,) = (tmp_path / "short").iterdir()
    assert "reinmax" not in (short / "summary.md").read_text()


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def load_gpu_figures() -> object:
    return load_script("gpu_figures")


def test_the_reinmax_summary_averages_only_the_seeds_that_completed(tmp_path: Path) -> None:
    # Seed 2 stopped after its first epoch: its numbers are the first epoch's, not the last's.
    for seed, (losses, status) in enumerate(
        (([120.0, 100.0], "completed"), ([120.0, 102.0], "completed"), ([150.0], "interrupted"))
    ):
        run = RunFolder(tmp_path / "8x4" / "reinmax" / str(seed))
        run.path.mkdir(parents=True)
        records = [{"epoch": e, "test/loss": x, "train/loss_unrelaxed": x} for e, x in enumerate(losses, 1)]
        run.metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
        run.status.write_text(json.dumps({"status": status}))
    (row,) = load_script("reinmax2023").summary_rows(tmp_path, ["8x4"], ["reinmax"])
    assert (row["epochs"], row["test negative ELBO"]) == (2, (101.0, 1.0, 2))  # mean, stderr, seeds


def test_the_authors_released_runs_are_read_with_each_estimators_settings_at_the_epoch_asked_for(
    tmp_path: Path,
) -> None:
    # Their files: a line per epoch (training loss first, test loss fourth), named by the settings.
    reinmax2023 = load_script("reinmax2023")
    wanted = "results_seed{}_reinmax_cat8_lat4_optAdam_lr0.0005_temp1.3.txt"  # SETTINGS' 8x4 ReinMax
    epochs = [[130.0, 1, 1, 131.0, 1, 1, 0.1, 0.1]] * 159
    for seed, (train_loss, test_loss) in enumerate([(125.0, 127.0), (126.0, 128.0)]):
        last = [[train_loss, 1, 1, test_loss, 1, 1, 0.1, 0.1]]
        (tmp_path / wanted.format(seed)).write_text(
            "".join(",".join(map(str, e)) + "\n" for e in epochs + last)
        )
    (tmp_path / wanted.format(2)).write_text("1,1,1,1,1,1,1,1\n" * 80)  # stopped at epoch 80: left out
    (tmp_path / wanted.format(3).replace("temp1.3", "temp1.0")).write_text("1,1,1,1,1,1,1,1\n" * 160)
    (row,) = reinmax2023.released_rows(tmp_path, ["8x4"], ["reinmax"], seeds=10)
    assert row["train loss (last epoch)"] == pytest.approx((125.5, 0.5, 2))  # mean, stderr, seeds
    assert row["test negative ELBO"] == pytest.approx((127.5, 0.5, 2))
    assert reinmax2023.released_rows(tmp_path, ["8x4"], ["straight_through"], seeds=10) == []
    (early,) = reinmax2023.released_rows(tmp_path, ["8x4"], ["reinmax"], seeds=10, epochs=80)
    # epoch 80: 131 for seeds 0 and 1, 1 for seed 2, whose file ends there
    assert (early["epochs"], early["test negative ELBO"]) == (80, pytest.approx((263 / 3, 130 / 3, 3)))


def test_the_reinmax_summary_puts_the_released_numbers_beside_ours_and_marks_differences_beyond_3_se(
    tmp_path: Path,
) -> None:
    reinmax2023 = load_script("reinmax2023")
    ours = reinmax2023.row_of("8x4", "reinmax", 160, {name: [100.0, 102.0] for name in reinmax2023.METRICS})
    reinmax2023.write_rows([ours], tmp_path / "theirs.csv")  # the format of docs/reinmax2023_released.csv
    read = reinmax2023.read_rows(tmp_path / "theirs.csv")
    assert read == {
        ("8x4", "reinmax"): {"epochs": 160} | {name: (101.0, 1.0, 2) for name in reinmax2023.METRICS}
    }
    train, test = reinmax2023.METRICS
    theirs = {
        ("8x4", "reinmax"): {"epochs": 160, train: Estimate(100.0, 1.0, 10), test: Estimate(105.5, 0.5, 10)}
    }
    table = reinmax2023.markdown([ours], theirs)
    # ours 101.00 +- 1.00: +1.00 is 0.7 standard errors of the difference, -4.50 is 4.0 of them
    assert "| 101.00 +- 1.00 (2) | 100.00 +- 1.00 (10) | +1.00 (0.7 SE) |" in table
    assert "| 101.00 +- 1.00 (2) | 105.50 +- 0.50 (10) | **-4.50 (4.0 SE)** |" in table
    # Numbers of another epoch are no comparison: a shortened run of ours gets none.
    shortened = reinmax2023.markdown([ours | {"epochs": 10}], theirs)
    assert "| 101.00 +- 1.00 (2) |  |  | 101.00 +- 1.00 (2) |  |  |" in shortened
    assert reinmax2023.markdown([ours], {}) == reinmax2023.markdown([ours])  # nothing released: ours alone
    assert "theirs" not in reinmax2023.markdown([ours])


def test_a_file_of_released_numbers_that_is_not_one_fails_in_one_line(tmp_path: Path) -> None:
    reinmax2023 = load_script("reinmax2023")
    (tmp_path / "runs.csv").write_text("job,status\n8x4/reinmax/0,completed\n")  # a runs.csv, not theirs
    for path, said in [
        (tmp_path / "runs.csv", "is not a summary that --released wrote"),
        (tmp_path, "cannot be read"),
    ]:
        with pytest.raises(SystemExit) as ended:
            reinmax2023.read_rows(path)
        assert str(ended.value).startswith(f"error: --theirs {path} {said}") and "\n" not in str(ended.value)
    (tmp_path / "results_seed0_reinmax_cat8_lat4_optAdam_lr0.0005_temp1.3.txt").write_text("<html>\n" * 160)
    with pytest.raises(SystemExit, match="line 160, is not a line of numbers"):
        reinmax2023.released_rows(tmp_path, ["8x4"], ["reinmax"], seeds=1)


def test_the_released_numbers_kept_in_docs_cover_every_configuration_and_estimator() -> None:
    reinmax2023 = load_script("reinmax2023")
    released = reinmax2023.read_rows(reinmax2023.THEIRS)
    assert set(released) == set(reinmax2023.SETTINGS)
    assert all(estimates[name].n >= 5 for estimates in released.values() for name in reinmax2023.METRICS)


def starts_a_grandchild(pid_file: Path) -> str:
    """Gives Python code that starts a process of its own, writes its pid to ``pid_file`` and waits."""
    return (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )


def ends(pid_file: Path) -> bool:
    """Waits up to 5 s for the process whose pid is in ``pid_file`` to end; says whether it did (a
    dead orphan may linger as a zombie until something reaps it: that counts as ended)."""

    for _ in range(50):
        try:
            state = Path(f"/proc/{pid_file.read_text()}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_a_gpu_figures_step_out_of_budget_is_stopped_with_every_process_it_started(tmp_path: Path) -> None:

    gpu_figures = load_gpu_figures()
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    assert (
        gpu_figures.run_step(["-c", starts_a_grandchild(pid_file)], tmp_path / "step.log", seconds=3) is None
    )
    assert time.monotonic() - started < 15
    assert ends(pid_file), "a process the step started still runs"
    assert gpu_figures.run_step(["-c", "print('done')"], tmp_path / "quick.log", seconds=30) == 0
    assert (tmp_path / "quick.log").read_text() == "done\n"


def test_ctrl_c_in_gpu_figures_stops_the_step_it_runs_with_every_process_it_started(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "grandchild.pid"
    step = ["-c", starts_a_grandchild(pid_file)]
    runs_the_steps = (  # every step replaced by one that starts a process of its own and waits
        "import importlib.util; "
        f"spec = importlib.util.spec_from_file_location('g', {str(REPO / 'scripts' / 'gpu_figures.py')!r}); "
        "g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g); "
        f"g.step_commands = lambda args: dict.fromkeys(g.STEPS, {step!r}); "
        f"g.main(['--out', {str(tmp_path / 'gpu')!r}])"
    )
    figures = subprocess.Popen([sys.executable, "-c", runs_the_steps], stderr=subprocess.PIPE, text=True)
    for _ in range(300):  # the grandchild is up
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    figures.send_signal(signal.SIGINT)
    _, err = figures.communicate(timeout=20)
    (out,) = (tmp_path / "gpu").iterdir()
    assert figures.returncode == 130
    assert err == (
        "error: interrupted by SIGINT in the step cuda_tests, which was stopped with its processes; "
        f"what the steps measured so far is in {out / 'summary.md'}\n"
    )
    assert "## cuda_tests: interrupted by SIGINT" in (out / "summary.md").read_text()
    assert ends(pid_file), "a process the step started still runs after Ctrl-C"
