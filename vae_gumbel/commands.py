"""The console commands (pyproject's ``[project.scripts]``) and ``python -m`` entry points: each
entry point's ``main``, in a process that ends as soon as its work is done.

``python -m`` runs the same: each entry point's module hands over to its command here before its
own imports, and the command imports the module under its own name inside its guard. So a Ctrl-C
during those imports (seconds: torch, Hydra) ends in one line, the module's body runs once, and
launchers that pickle the task (joblib, submitit) pickle ``main`` by reference, not by value.

After the last line of a program, the interpreter tears itself down: it collects and frees every
object still alive, module by module, and with torch and its compiler stack imported those are
millions, about a second at the end of every run on a 2-core CPU (docs/performance.md). A
command has nothing left to lose there: its files are closed and its threads have ended. So it
ends as the interpreter would up to that teardown (joining the threads, running the atexit
handlers, flushing the standard streams) and then leaves with its exit status.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from typing import Any, NoReturn

# What a command says to a Ctrl-C that reaches it whole: one that comes while a run trains stops the
# run at its next step and says how to continue it (errors.Interrupted), so this one came before any
# training (the imports, the data, the build) or after it, or to a command that trains nothing.
INTERRUPTED = "error: interrupted by SIGINT (no training was in progress)"
# What a timing script says to it: the runs it times stop with their checkpoints (``run_child``).
TIMING_INTERRUPTED = "error: interrupted by SIGINT: the timing stopped before it wrote its results"

# What this process says to such a Ctrl-C now: a sweep that has started says how to continue it.
_on_interrupt = [INTERRUPTED]


def on_interrupt_say(line: str) -> None:
    """Makes ``line`` what a Ctrl-C that reaches the command whole says from now on: a sweep's
    launcher waits for jobs in other processes (joblib), whose runs stop with their checkpoints."""
    _on_interrupt[0] = line


def run_child(command: list[str], **popen: Any) -> subprocess.CompletedProcess:
    """Runs ``command`` as ``subprocess.run`` does, except after a Ctrl-C: the terminal sends the
    child its own SIGINT, and this waits for it to stop as it does (a run at its next step, with its
    checkpoint written) before the KeyboardInterrupt goes on, where ``subprocess.run`` would kill it
    a quarter of a second later. A second Ctrl-C stops the waiting."""
    with subprocess.Popen(command, **popen) as process:
        try:
            stdout, stderr = process.communicate()
        except KeyboardInterrupt:
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.wait(), stdout, stderr)


def run(main: Callable[[], object]) -> NoReturn:
    """Runs ``main`` and ends the process with the status it gives (as ``sys.exit`` reads it).

    An exception, ``SystemExit`` included, leaves the ordinary way, with the usual traceback. A
    reader that stops reading (``--help | head``) ends the command quietly, with the status of a
    program that SIGPIPE ended, as it would end a C program; a Ctrl-C ends it with one line
    (``INTERRUPTED``, or what ``on_interrupt_say`` set) and status 130. ``--version`` anywhere on
    the command line prints the versions (``provenance.version_line``) instead, for every command.
    """
    if "--version" in sys.argv[1:]:  # before Hydra, whose own flag would name only Hydra's version
        from vae_gumbel.provenance import version_line

        print(version_line())
        exit_now(0)
    try:
        status = main()
    except BrokenPipeError:
        # Nothing more can reach the reader; point stdout at nothing so that the final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print(_on_interrupt[0], file=sys.stderr)
        status = 128 + signal.SIGINT
    exit_now(status)


def exit_now(status: object = None) -> NoReturn:
    """Ends the process as the interpreter does, less its teardown: status as ``sys.exit`` takes it."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    # The interpreter's own order: wait for the other threads (and run threading's exit hooks,
    # such as the shutdown of executors), then the atexit handlers (logging's final flush, torch's
    # worker pools), then flush the standard streams.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can reach it
            pass
    os._exit(code)


def usage_name(module: str) -> str:
    """Gives the name a command's usage line shows: the console command as it was typed, or
    ``python -m MODULE`` (where argparse would show the module's file name, ``report.py``)."""
    name = os.path.basename(sys.argv[0])
    return f"python -m {module}" if name.endswith(".py") or name == "-c" else name


def argument_parser(module: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """An argparse command's parser: its usage line names the command as it was typed, and its
    help ends with examples, as the Hydra commands' help does (``%(prog)s`` in an example is the
    command). Examples and description keep their line breaks."""
    return argparse.ArgumentParser(
        prog=usage_name(module),
        description=description,
        epilog="examples:\n" + "\n".join(f"  %(prog)s {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``, so that a bad one is refused in
    argparse's one line before anything runs."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return whole_number


def check_command_line(config_name: str) -> None:
    """Ends the process with a one-line error for an override that Hydra would stop at with a trace
    (a number for a config group: ``temperature=0.5``) or with less than the user needs to know (a
    launcher whose plugin is not installed)."""
    from vae_gumbel import command_line
    from vae_gumbel.errors import one_line_errors

    with one_line_errors():
        command_line.check_command_line(sys.argv[1:], config_name)


def hydra_command(name: str) -> Callable[[], object]:
    """Gives the command of the Hydra entry point ``name`` (train, sample, evaluate): it imports the
    module (seconds: torch, Hydra) inside, so that a Ctrl-C then ends in one line too, checks the
    command line and calls the module's main."""

    def command() -> object:
        main = import_module(f"vae_gumbel.{name}").main
        check_command_line(name)
        try:
            return main()
        except SystemExit as ended:
            if ended.code == 1:  # a failed job: Hydra's sweeper stops before the sweep's end
                from vae_gumbel.tracking import end_failed_sweep

                end_failed_sweep()
            raise

    return command


def module_command(module: str) -> Callable[[], object]:
    """Gives the command of the argparse entry point ``module``: it imports the module (seconds:
    torch) inside, as ``hydra_command`` does, and calls its main."""
    return lambda: import_module(module).main()


# The package's commands, each ``python -m vae_gumbel.NAME`` and the console command vae-gumbel-NAME
# (pyproject's [project.scripts]), with what it does: what ``python -m vae_gumbel`` lists.
COMMANDS = {
    "train": "train (one run, or a sweep with -m)",
    "sample": "draw a grid from a checkpoint",
    "evaluate": "importance-weighted test likelihoods",
    "report": "compare the runs of a sweep",
    "benchmark": "time the trainer against the tutorial loop",
    "datasets": "fetch MNIST or Fashion-MNIST into a data folder",
}


def package() -> NoReturn:
    """python -m vae_gumbel: lists the commands, for a user who tried the package's own name (with
    ``--help`` on stdout; otherwise on stderr with status 2, as a command line that names none)."""

    def main() -> int:
        asked = sys.argv[1:2]
        lines = [
            "usage: python -m vae_gumbel.COMMAND [arguments]  (or vae-gumbel-COMMAND; each takes --help)",
            "",
            *(f"  {name:<10} {does}" for name, does in COMMANDS.items()),
        ]
        if asked in (["--help"], ["-h"]):
            print("\n".join(lines))
            return 0
        if asked and asked[0] in COMMANDS:
            lines.insert(0, f"error: the command is a module of its own: python -m vae_gumbel.{asked[0]}")
        print("\n".join(lines), file=sys.stderr)
        return 2

    run(main)


def train() -> NoReturn:
    """vae-gumbel-train"""
    run(hydra_command("train"))


def sample() -> NoReturn:
    """vae-gumbel-sample"""
    run(hydra_command("sample"))


def evaluate() -> NoReturn:
    """vae-gumbel-evaluate"""
    run(hydra_command("evaluate"))


def report() -> NoReturn:
    """vae-gumbel-report"""
    run(module_command("vae_gumbel.report"))


def benchmark() -> NoReturn:
    """vae-gumbel-benchmark"""
    run(module_command("vae_gumbel.tools.benchmark"))


def datasets() -> NoReturn:
    """vae-gumbel-datasets"""
    run(module_command("vae_gumbel.datasets"))
