"""Importance-weighted test likelihoods, eval.json, and the estimators inside the trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import CONF, run_module
from vae_gumbel.config import validate
from vae_gumbel.errors import ConfigError
from vae_gumbel.evaluate import run_evaluation
from vae_gumbel.gradients import all_codes
from vae_gumbel.likelihood import importance_weighted_nll
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.objectives import bernoulli_nll
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import objective, train


@pytest.fixture(scope="module")
def tiny_model_and_data() -> tuple[CategoricalVAE, torch.Tensor]:
    """A 2 x 3 latent model (9 codes: log p(x) is exact by enumeration) and binary images."""
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=2, categorical_dim=3, hidden=(16,))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3)  # a peaked posterior and decoder: bounds far from tight at k = 1
    x = torch.rand(20, 784).lt(0.3).float()
    return model, x


def exact_log_likelihood(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    codes = all_codes(2, 3)
    with torch.no_grad():
        log_px_z = torch.stack([-bernoulli_nll(model.decode(c.expand(len(x), 2, 3)), x) for c in codes])
    return torch.logsumexp(log_px_z - 2 * math.log(3), dim=0)


def exact_elbo_moments(model: CategoricalVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gives E_q[log w] (the ELBO) and Var_q[log w] per image, by enumeration."""
    codes = all_codes(2, 3)
    with torch.no_grad():
        log_q_all = torch.log_softmax(model.encode(x), -1)
        q, log_w = [], []
        for c in codes:
            log_q = (c * log_q_all).sum((-2, -1))
            log_joint = -bernoulli_nll(model.decode(c.expand(len(x), 2, 3)), x) - 2 * math.log(3)
            q.append(log_q.exp())
            log_w.append(log_joint - log_q)
    q, log_w = torch.stack(q).double(), torch.stack(log_w).double()
    mean = (q * log_w).sum(0)
    return mean, (q * (log_w - mean) ** 2).sum(0)


def test_iwae_bounds_tighten_with_k_toward_the_exact_likelihood(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    exact_nll = float(-exact_log_likelihood(model, x).mean())
    estimate = importance_weighted_nll(model, x, (1, 10, 100, 5000), batch_size=7, max_rows=300, seed=1)
    bounds = [estimate.iwae_nll[k] for k in (1, 10, 100, 5000)]
    assert bounds[0] - exact_nll > 1.0  # k = 1 is loose on this model
    assert all(a >= b - 0.05 for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(b >= exact_nll - 0.05 for b in bounds)
    assert bounds[-1] == pytest.approx(exact_nll, abs=0.05)


def test_negative_elbo_averaged_over_draws_matches_the_exact_elbo(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    draws = 2000
    estimate = importance_weighted_nll(model, x, (draws,), batch_size=20, seed=2)
    elbo, variance = exact_elbo_moments(model, x)
    standard_error = float(variance.mean().sqrt()) / math.sqrt(len(x) * draws)
    assert estimate.neg_elbo == pytest.approx(float(-elbo.mean()), abs=5 * standard_error)
    assert estimate.samples == draws


def test_bad_numbers_of_importance_samples_are_refused(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    with pytest.raises(ValueError, match=">= 1"):
        importance_weighted_nll(model, x, (0, 10))


@pytest.fixture(scope="module")
def run_dir(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import small_overrides

    folder = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        train(
            compose("train", overrides=[*small_overrides(mnist_root), "eval.final_iwae_samples=[1,10]"]),
            folder,
        )
    return folder


def test_evaluate_writes_eval_json_with_bounds_and_what_they_were_measured_on(
    run_dir: Path, tmp_path: Path
) -> None:
    import shutil

    copy = shutil.copytree(run_dir, tmp_path / "run")  # the run's own eval.json stays for other tests
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        out, _ = run_evaluation(
            compose("evaluate", overrides=[f"checkpoint={copy}", "iwae_samples=[1,5,50]"])
        )
    assert out == copy / "eval.json"
    saved = json.loads(out.read_text())
    assert set(saved["iwae_nll"]) == {"1", "5", "50"}
    assert saved["iwae_nll"]["50"] <= saved["iwae_nll"]["1"] + 0.5
    assert saved["neg_elbo"] > 0 and saved["neg_elbo_samples"] == 50
    assert (saved["estimator"], saved["latent_dim"], saved["categorical_dim"], saved["steps"]) == (
        "gumbel_softmax",
        4,
        5,
        6,
    )
    assert saved["binarization"]["seed"] == 0 and len(saved["binarization"]["targets_sha256"]) == 64
    assert len(saved["kl_per_variable"]) == 4 and 0 <= saved["active_variables"] <= 4
    assert saved["test_images"] == 60


def test_test_binarization_is_the_same_bits_every_time(run_dir: Path, tmp_path: Path) -> None:
    digests = []
    for name in ("a.json", "b.json"):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            overrides = [f"checkpoint={run_dir}", "iwae_samples=[1]", f"out={tmp_path / name}"]
            digests.append(run_evaluation(compose("evaluate", overrides=overrides))[1]["binarization"])
    assert digests[0] == digests[1]


def test_evaluate_cli_prints_the_bounds(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = run_module(
        "vae_gumbel.evaluate",
        f"checkpoint={run_dir}",
        "iwae_samples=[1,10]",
        f"out={out}",
        "test_limit=30",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "IWAE NLL, k =    10:" in result.stdout
    assert json.loads(out.read_text())["test_images"] == 30


def test_evaluate_cli_reports_a_missing_checkpoint_in_one_line(tmp_path: Path) -> None:
    result = run_module("vae_gumbel.evaluate", f"checkpoint={tmp_path / 'nope'}", cwd=tmp_path)
    assert result.returncode != 0 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_trainer_runs_the_final_iwae_evaluation_for_sweeps_to_rank_by(run_dir: Path) -> None:
    record = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert {"test/iwae_nll_1", "test/iwae_nll_10", "test/neg_elbo_mean"} <= set(record)
    assert objective(record) == record["test/iwae_nll_10"]
    assert objective({"test/loss": 99.0}) == 99.0
    assert json.loads((run_dir / "eval.json").read_text())["iwae_nll"]["10"] == record["test/iwae_nll_10"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["estimator=gumbel_rao", "estimator.rao_samples=4"],
        ["estimator=reinmax", "temperature=constant"],
        ["estimator=gumbel_softmax", "estimator.kl=relaxed", "estimator.prior_temperature=0.5"],
    ],
    ids=["gumbel_rao", "reinmax", "relaxed_kl"],
)
def test_every_estimator_trains_the_model(compose_train, tmp_path: Path, overrides: list[str]) -> None:
    records = [train(compose_train(*overrides, f"trainer.epochs={n}"), tmp_path / str(n)) for n in (1, 6)]
    assert all(math.isfinite(r["train/loss_relaxed"]) for r in records)
    assert records[1]["test/loss"] < records[0]["test/loss"] - 3


def test_relaxed_kl_with_a_straight_through_estimator_is_refused(compose_train) -> None:
    with pytest.raises(ConfigError, match="estimator.kl must be analytic unless"):
        validate(compose_train("estimator=straight_through", "estimator.kl=relaxed"))
