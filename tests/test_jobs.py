"""What the report reads from a run folder: a run's status, and values compared as Hydra reads them."""

from __future__ import annotations

from pathlib import Path

from tests.test_report import write_job
from vae_gumbel.jobs import comparable, read_job
from vae_gumbel.run_folder import RunFolder, training_into


def test_values_compare_as_hydra_reads_them() -> None:
    same = [
        ("1e-3", "0.001"),
        ("1", "1.0"),
        ("true", "True"),
        ("null", "NULL"),
        ("'adam'", "adam"),
        ("nan", "nan"),
    ]
    for one, other in same:
        assert comparable(one) == comparable(other), (one, other)
    for one, other in [("null", "'null'"), ("1", "true"), ("0", "false"), ("1e-3", "1e-4")]:
        assert comparable(one) != comparable(other), (one, other)


def test_a_run_that_says_it_trains_is_training_while_its_folder_is_held_and_killed_after(
    tmp_path: Path,
) -> None:
    write_job(
        tmp_path, ["seed=1"], [120.0], {"status": "training", "epoch": 0, "pid": 4242, "host": "node17"}
    )
    with training_into(RunFolder(tmp_path)):  # as the process that trains it holds it
        assert read_job(tmp_path, tmp_path).status == "training"
    assert read_job(tmp_path, tmp_path).status == "killed"  # it ended without saying how
