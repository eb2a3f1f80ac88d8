"""The console commands: each entry point's main, in a process that ends when its work is done."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import signal
import subprocess
import sys
import time

import pytest

import vae_gumbel
import vae_gumbel.provenance as provenance
from tests.conftest import REPO
from vae_gumbel.commands import COMMANDS, INTERRUPTED
from vae_gumbel.provenance import version_line


def command_process(main_body: str) -> subprocess.CompletedProcess[str]:
    """Runs ``commands.run(main)`` in a fresh interpreter, with ``main_body`` as main's body."""
    code = (
        "import atexit, sys, threading, time\n"
        "from vae_gumbel import commands\n"
        "class Teardown:\n"
        "    def __del__(self):\n"
        "        print('torn down', flush=True)\n"
        "kept_until_teardown = Teardown()\n"
        "def main():\n" + "".join(f"    {line}\n" for line in main_body.splitlines()) + "commands.run(main)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_package_lists_its_commands_each_a_module_and_a_console_command() -> None:
    scripts = re.findall(
        r'^vae-gumbel-(\w+) = "vae_gumbel\.commands:(\w+)"$', (REPO / "pyproject.toml").read_text(), re.M
    )
    assert scripts == [(name, name) for name in COMMANDS]
    assert all(importlib.util.find_spec(f"vae_gumbel.{name}") for name in COMMANDS)
    listed = subprocess.run(
        [sys.executable, "-m", "vae_gumbel", "--help"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0 and listed.stdout.startswith("usage: python -m vae_gumbel.COMMAND")
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]] == list(COMMANDS)
    bare = subprocess.run([sys.executable, "-m", "vae_gumbel"], capture_output=True, text=True, timeout=60)
    assert (bare.returncode, bare.stdout, bare.stderr) == (2, "", listed.stdout)
    named = subprocess.run(
        [sys.executable, "-m", "vae_gumbel", "train", "seed=1"], capture_output=True, text=True, timeout=60
    )
    assert named.returncode == 2
    assert (
        named.stderr
        == "error: the command is a module of its own: python -m vae_gumbel.train\n" + listed.stdout
    )


def test_a_command_ends_as_the_interpreter_would_but_without_its_teardown() -> None:
    done = command_process(
        "def late(): time.sleep(0.3); sys.stdout.write('thread done; ')\n"
        "threading.Thread(target=late).start()\n"
        "atexit.register(lambda: sys.stdout.write('atexit ran; '))\n"
        "sys.stdout.write('unflushed; ')\n"
        "return 3"
    )
    # The other thread is waited for, atexit handlers run, the streams are flushed; the objects
    # still alive are not torn down one by one (that is the second the exit saves).
    assert done.stdout == "unflushed; thread done; atexit ran; "
    assert done.returncode == 3


@pytest.mark.parametrize(
    ("returned", "code", "stderr"),
    [
        ("None", 0, ""),
        ("0", 0, ""),
        ("2", 2, ""),
        ("'no runs under outputs/x'", 1, "no runs under outputs/x\n"),
    ],
)
def test_a_command_exits_with_what_main_returns_as_sys_exit_reads_it(
    returned: str, code: int, stderr: str
) -> None:
    done = command_process(f"return {returned}")
    assert (done.returncode, done.stderr) == (code, stderr)


def test_an_exception_in_main_leaves_the_ordinary_way() -> None:
    done = command_process("raise SystemExit(4)")
    assert done.returncode == 4 and "torn down" in done.stdout  # the usual exit, teardown and all


def test_a_ctrl_c_that_reaches_a_command_ends_it_in_one_line_with_status_130() -> None:
    done = command_process("import os, signal\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)")
    assert (done.returncode, done.stderr) == (130, INTERRUPTED + "\n")


def test_a_child_command_that_a_ctrl_c_reaches_too_is_waited_for_while_it_stops(tmp_path) -> None:
    # The child takes a second to stop (a run writing its checkpoint); subprocess.run kills it at 0.25 s.
    stopped = tmp_path / "stopped"
    child = (
        "import signal, sys, time\n"
        "def stop(*_):\n    time.sleep(1)\n    open(sys.argv[1], 'w').write('cleanly')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    parent = (
        "import sys\nfrom vae_gumbel import commands\n"
        f"command = [sys.executable, '-c', {child!r}, {str(stopped)!r}]\n"
        "commands.run(lambda: commands.run_child(command).returncode)"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", parent],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    ) as process:
        assert process.stdout.readline() == "ready\n"
        time.sleep(0.5)  # for the parent, on a busy machine, to be waiting for its child by now
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: to both
        _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (130, INTERRUPTED + "\n")
    assert stopped.read_text() == "cleanly"


def interrupted_at_a_library(code: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter that gets a SIGINT at its first import of torch,
    matplotlib or Hydra (the seconds of a command's start-up; the report imports no torch, and
    the data set command neither torch nor matplotlib)."""
    hook = (
        "import builtins, os, signal\n"
        "real_import = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name.partition('.')[0] in ('torch', 'matplotlib', 'hydra'):\n"
        "        builtins.__import__ = real_import\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupted\n"
    )
    return subprocess.run([sys.executable, "-c", hook + code], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_while_a_console_command_imports_its_libraries_ends_it_in_one_line() -> None:
    # The import of the entry point's module (torch, Hydra: seconds) happens inside the command.
    done = interrupted_at_a_library("from vae_gumbel import commands\ncommands.report()\n")
    assert (done.returncode, done.stderr) == (130, INTERRUPTED + "\n")


@pytest.mark.parametrize(
    "module", ["train", "sample", "evaluate", "report", "datasets", "benchmark", "tools.benchmark"]
)
def test_a_ctrl_c_while_python_m_imports_the_libraries_ends_it_in_one_line(module: str) -> None:
    # python -m vae_gumbel.MODULE, as runpy runs it: the module hands over to its command first.
    done = interrupted_at_a_library(
        f"import runpy\nrunpy.run_module('vae_gumbel.{module}', run_name='__main__', alter_sys=True)\n"
    )
    assert (done.returncode, done.stderr) == (130, INTERRUPTED + "\n")


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (
            "train",
            [
                "[group=option ...] [key=value ...]",
                "temperature: constant, exp_anneal, learned",
                "resume=last",
            ],
        ),
        ("evaluate", ["checkpoint=PATH", "iwae_samples  the k of the bounds", "eval_2.json"]),
        ("sample", ["checkpoint=PATH", "traversal: one latent variable", "overwrite     a different"]),
    ],
)
def test_each_command_says_in_its_help_what_it_does_and_what_its_settings_mean(
    command: str, says: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"vae_gumbel.{command}", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"python -m vae_gumbel.{command} ")
    completion = f'Tab completion of settings in bash: eval "$(vae-gumbel-{command} -sc install=bash)"'
    for text in [*says, completion]:
        assert text in done.stdout
    # evaluate and sample take no training groups, so their help lists none.
    assert ("== Configuration groups ==" in done.stdout) == (command == "train")


@pytest.mark.parametrize("module", ["vae_gumbel.report", "vae_gumbel.benchmark", "vae_gumbel.datasets"])
def test_an_argparse_command_run_as_a_module_shows_its_module_in_its_usage_line_and_examples(
    module: str,
) -> None:
    command = [sys.executable, "-m", module, "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module} [-h]")
    examples = done.stdout.split("\nexamples:\n")[1].splitlines()
    assert len(examples) >= 2 and all(line.startswith(f"  python -m {module} ") for line in examples)


@pytest.mark.parametrize(
    "module", ["vae_gumbel", "vae_gumbel.train", "vae_gumbel.report", "vae_gumbel.benchmark"]
)
def test_every_command_names_its_version_and_its_libraries_at_once(module: str) -> None:
    # Hydra's own --version would name only Hydra's; and this one imports no torch, so it is quick.
    command = [sys.executable, "-X", "importtime", "-m", module, "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, version_line() + "\n")
    assert done.stdout.startswith(f"vae-gumbel {vae_gumbel.__version__}")
    assert not re.search(r"\|\s+torch$", done.stderr, re.MULTILINE)  # -X importtime lists each import


def test_the_version_line_names_each_library_or_that_it_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(provenance, "LIBRARIES", ("torch", "no-such-library"))
    line = version_line()
    assert f", Python {platform.python_version()}, torch {importlib.metadata.version('torch')}, " in line
    assert line.endswith(", no-such-library not installed")


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_a_number_for_a_config_group_is_one_line_with_exit_code_2(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"vae_gumbel.{command}", "checkpoint=unused", "temperature=0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("error: temperature=0.5: ") and done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "typed", "offered"),
    [
        ("train", "optim.l", ["optim.lr="]),
        ("train", "estimator=reinm", ["estimator=reinmax", "estimator=reinmax_rao"]),
        ("evaluate", "iwae_s", ["iwae_samples."]),
        # Not train's groups (data=, debug=; objective=, optim=), which these commands do not take.
        ("sample", "d", ["data.", "device="]),
        ("evaluate", "o", ["out="]),
    ],
)
def test_hydras_tab_completion_offers_each_commands_settings(
    command: str, typed: str, offered: list[str]
) -> None:
    # What bash's completion function (printed by `vae-gumbel-train -sc install=bash`) asks for.
    done = subprocess.run(
        [sys.executable, "-m", f"vae_gumbel.{command}", "-sc", "query=bash"],
        env={**os.environ, "COMP_LINE": f"vae-gumbel-{command} {typed}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, offered, "")


def test_a_reader_that_stops_reading_ends_a_command_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "vae_gumbel.evaluate", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # as `| head` does, long before the command writes
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGPIPE
    assert stderr == ""
