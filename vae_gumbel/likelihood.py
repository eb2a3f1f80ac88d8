"""Honest test scores of the discrete model: the test ELBO and importance-weighted bounds.

Both use exact one-hot draws from q(z | x), never relaxed samples. The test ELBO (one draw per
image, the same noise at every evaluation) is what training logs each epoch, for every member
of a stack at once. The importance-weighted bound log p(x) >= E[log (1/k) sum_i p(x, z_i) /
q(z_i | x)] (Burda et al. 2016) tightens as k grows; k = 1 is the ELBO.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vae_gumbel.categories import log_softmax
from vae_gumbel.data import ImageSet
from vae_gumbel.files import claim_numbered, replacing, taking_turns
from vae_gumbel.gumbel import gumbel_max, sample_gumbel
from vae_gumbel.model import CategoricalVAE, stack_size
from vae_gumbel.objectives import NegativeElbo, bernoulli_nll, code_perplexity, kl_per_variable
from vae_gumbel.progress import Progress
from vae_gumbel.provenance import environment

log = logging.getLogger("vae_gumbel.evaluate")

# A latent variable is active when it tells this much about the image (mutual information, nats).
ACTIVE_NATS = 0.01


@dataclass
class TestScores:
    metrics: dict[str, float]  # test/loss, test/recon, test/kl, test/perplexity, test/active_variables
    usage: torch.Tensor  # (N, K) how often each category was sampled on the test set
    kl_per_variable: torch.Tensor  # (N,) mean KL of each latent variable to the prior


# What eval.json and the logs call the images of each held-out split.
IMAGES = {"test": "test", "val": "validation"}


@torch.inference_mode()
def score_test_set(
    model: CategoricalVAE, images: ImageSet, batch_size: int, seed: int, split: str = "test"
) -> list[TestScores]:
    """Gives the test negative ELBO of each member of ``model`` (one for a plain model) with exact
    one-hot posterior samples (no relaxation); ``split`` names the metrics (``val`` for the
    validation set).

    A variable counts as active when its code tells something about the image: the mutual
    information between image and code over these images, mean KL(q(z|x) || prior) less
    KL(mean q || prior), is above ACTIVE_NATS. Its KL to the prior alone would count a posterior
    frozen on one category for every image, which has the largest KL (log K) and tells nothing.

    The noise comes from a generator seeded with ``seed``, in one draw for the whole set, and is
    the same for every member, so every evaluation of the same weights draws the same samples:
    test losses compare across epochs, across the members of a stack and across stack sizes.
    ``batch_size`` counts rows, images times members: a stack of M evaluates batch_size / M
    images at a time, so its activations stay as small as one model's (a stack of 32 on a
    2-core CPU evaluated 1.6x faster than with 10,000 images at a time).
    """
    device = images.pixels.device
    generator = torch.Generator(device=device).manual_seed(seed)
    members = stack_size(model)
    n, k = model.latent_dim, model.categorical_dim
    sums = torch.zeros(members, 3, device=device, dtype=torch.float64)
    usage = torch.zeros(members, n, k, device=device)
    kl_per_var = torch.zeros(members, n, device=device, dtype=torch.float64)
    posterior_sum = torch.zeros(members, n, k, device=device, dtype=torch.float64)
    noise = sample_gumbel((len(images), n, k), device=device, generator=generator)
    chunk = max(1, batch_size // members)
    for start in range(0, len(images), chunk):
        x = images.targets(slice(start, start + chunk))
        logits = model.encode(x.expand(members, *x.shape))  # (members, chunk, N, K)
        codes = gumbel_max(logits, one_hot=True, noise=noise[start : start + chunk])
        kl_each = kl_per_variable(logits)  # (members, chunk, N), computed once for both sums
        elbo = NegativeElbo.of(bernoulli_nll(model.decode(codes), x), kl_each.sum(dim=-1))
        sums += torch.stack([elbo.loss.sum(-1), elbo.recon.sum(-1), elbo.kl.sum(-1)], dim=-1).double()
        usage += codes.sum(dim=-3)
        kl_per_var += kl_each.sum(dim=-2).double()
        posterior_sum += torch.softmax(logits.double(), dim=-1).sum(dim=-3)
    count = len(images)
    means = (sums / count).tolist()
    kl_means = kl_per_var / count
    perplexity = code_perplexity(usage).mean(dim=-1).tolist()
    aggregate = (posterior_sum / count).clamp_min(torch.finfo(torch.float64).tiny).log()
    information = kl_means - kl_per_variable(aggregate)
    active = (information > ACTIVE_NATS).sum(dim=-1).tolist()
    # The whole stack's maps leave the device at once, not one member's at a time.
    usage, kl_means = (usage / count).cpu(), kl_means.float().cpu()
    return [
        TestScores(
            metrics={
                f"{split}/loss": loss,
                f"{split}/recon": recon,
                f"{split}/kl": kl,
                f"{split}/perplexity": perplexity[m],
                f"{split}/active_variables": int(active[m]),
            },
            usage=usage[m],
            kl_per_variable=kl_means[m],
        )
        for m, (loss, recon, kl) in enumerate(means)
    ]


def log_importance_weights(
    model: CategoricalVAE, x: torch.Tensor, logits: torch.Tensor, codes: torch.Tensor
) -> torch.Tensor:
    """Gives log p(x|z) + log p(z) - log q(z|x), (samples, batch), for one-hot codes
    (samples, batch, N, K) drawn from the posterior with ``logits`` (batch, N, K)."""
    samples, batch, n, k = codes.shape
    decoded = model.decode(codes.reshape(samples * batch, n, k))
    log_likelihood = -bernoulli_nll(decoded, x.repeat(samples, 1)).view(samples, batch)
    log_prior = -n * math.log(k)
    log_posterior = (codes * log_softmax(logits.float())).sum(dim=(-2, -1))
    return log_likelihood + log_prior - log_posterior


@dataclass
class LikelihoodEstimate:
    iwae_nll: dict[int, float]  # k -> -(mean over images of the k-sample bound), in nats
    iwae_nll_stderr: dict[int, float]  # k -> standard error of that mean over the test images
    neg_elbo: float  # -(mean over images and all samples of log w): the ELBO averaged over draws
    samples: int  # the draws per image behind ``neg_elbo`` (the largest k)


@torch.inference_mode()
def importance_weighted_nll(
    model: CategoricalVAE,
    targets: torch.Tensor,
    ks: Sequence[int] = (1, 10, 100, 1000, 5000),
    *,
    batch_size: int = 100,
    max_rows: int = 50_000,
    seed: int = 0,
    progress: Progress | None = None,
) -> LikelihoodEstimate:
    """Gives the k-sample importance-weighted bounds for each k in ``ks`` on targets (n, 784).

    One set of max(ks) draws per image serves every k (the first k of them), processed in
    chunks of at most ``max_rows`` decoded images with a running logsumexp, so memory does
    not grow with k. ``progress`` counts the images done.
    """
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"the numbers of importance samples must be >= 1, got {list(ks)}")
    device = targets.device
    generator = torch.Generator(device=device).manual_seed(seed)
    largest = ks[-1]
    bound_sums = {k: 0.0 for k in ks}
    bound_squares = {k: 0.0 for k in ks}
    log_weight_sum = 0.0
    for start in range(0, len(targets), batch_size):
        x = targets[start : start + batch_size]
        logits = model.encode(x)
        running = torch.full((len(x),), -math.inf, device=device, dtype=torch.float64)
        done, chunk = 0, max(1, max_rows // len(x))
        for k in ks:
            while done < k:
                draws = min(chunk, k - done)
                codes = gumbel_max(logits.expand(draws, *logits.shape), one_hot=True, generator=generator)
                log_w = log_importance_weights(model, x, logits, codes).double()
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
                log_weight_sum += float(log_w.sum())
                done += draws
            bound = running - math.log(k)
            bound_sums[k] += float(bound.sum())
            bound_squares[k] += float((bound**2).sum())
        if progress is not None:
            progress.update(len(x))
    n = len(targets)

    def stderr(k: int) -> float:
        mean = bound_sums[k] / n
        variance = max(bound_squares[k] / n - mean**2, 0.0) * n / max(n - 1, 1)
        return math.sqrt(variance / n)

    return LikelihoodEstimate(
        iwae_nll={k: -total / n for k, total in bound_sums.items()},
        iwae_nll_stderr={k: stderr(k) for k in ks},
        neg_elbo=-log_weight_sum / (n * largest),
        samples=largest,
    )


def evaluation_report(
    model: CategoricalVAE,
    test_set: ImageSet,
    ks: Sequence[int],
    *,
    binarization: dict[str, Any],
    batch_size: int = 100,
    max_rows: int = 50_000,
    seed: int = 0,
    context: dict[str, Any] | None = None,
    progress: str = "false",
) -> dict[str, Any]:
    """Gives the contents of eval.json: likelihood bounds in nats and code diagnostics. ``progress``
    (auto, true, false) shows how far the bounds are, with an estimate of the time left."""
    started = time.perf_counter()
    targets = test_set.targets(slice(None))
    description = f"IWAE bounds, k up to {max(ks)}"
    with Progress(len(targets), description, progress, log, unit="img") as bar:
        estimate = importance_weighted_nll(
            model, targets, ks, batch_size=batch_size, max_rows=max_rows, seed=seed, progress=bar
        )
    (diagnostics,) = score_test_set(model, test_set, batch_size=max(batch_size, 1000), seed=seed)
    digest = hashlib.sha256(targets.cpu().numpy().tobytes()).hexdigest()
    return {
        **(context or {}),
        "test_images": len(targets),
        "binarization": {**binarization, "targets_sha256": digest},
        "neg_elbo": estimate.neg_elbo,
        "neg_elbo_samples": estimate.samples,
        "iwae_nll": {str(k): value for k, value in estimate.iwae_nll.items()},
        "iwae_nll_stderr": {str(k): value for k, value in estimate.iwae_nll_stderr.items()},
        "kl": float(diagnostics.kl_per_variable.sum()),
        "kl_per_variable": [round(v, 6) for v in diagnostics.kl_per_variable.tolist()],
        "active_variables": diagnostics.metrics["test/active_variables"],
        "perplexity": diagnostics.metrics["test/perplexity"],
        "seed": seed,
        "device": str(targets.device),
        "seconds": time.perf_counter() - started,
        "environment": environment(targets.device),
    }


# A Bernoulli "likelihood" of grey levels in [0, 1] is a cross-entropy, not the density of a
# distribution over the images: its bounds compare only with other grey-level numbers.
GREY_LEVELS = "grey levels (no binarization)"


def grey_level_caution(report: dict[str, Any]) -> str:
    """Gives what a reader of an evaluation's bounds must know when its targets were grey levels
    (they bound a cross-entropy, not a log-likelihood); "" for binarized targets."""
    if report["binarization"]["mode"] != GREY_LEVELS:
        return ""
    return (
        "grey-level targets: these bound a Bernoulli cross-entropy, not a log-likelihood; compare them "
        "with grey-level runs only, not with binarized MNIST"
    )


def binarization_of(data_config: dict[str, Any]) -> dict[str, Any]:
    """Gives how the test set was binarized, from a run's data config."""
    mode = data_config["binarize"]
    return {
        "mode": GREY_LEVELS if mode == "none" else f"fixed Bernoulli draw ({mode} training)",
        "seed": data_config.get("binarize_seed", 0),
    }


# What says which weights an evaluation scored, and how: two reports that agree on these (and on
# their k) differ only in rounding and in their timing.
EVALUATION_IDENTITY = (
    "estimator",
    "latent_dim",
    "categorical_dim",
    "epoch",
    "steps",
    "images",
    "test_images",
    "binarization",
    "seed",
)


def same_evaluation(earlier: dict[str, Any], report: dict[str, Any]) -> bool:
    """Says whether ``report`` repeats ``earlier``: the same weights, images, draws and k."""
    return set(earlier.get("iwae_nll", {})) == set(report["iwae_nll"]) and all(
        earlier.get(key) == report.get(key) for key in EVALUATION_IDENTITY
    )


def write_eval_json(report: dict[str, Any], path: Path) -> Path | None:
    """Writes an evaluation report as eval.json, atomically. An earlier, different evaluation there
    (other weights, images or k: it may have taken an hour) is kept under the first free numbered
    name, which this gives back (None if there was nothing to keep). Two evaluations that end at
    once take turns, so that each finds the other's report and keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = None
    with taking_turns(path.parent):
        try:
            earlier = json.loads(path.read_text())
        except FileNotFoundError:
            earlier = None
        except (OSError, ValueError):
            earlier = {}  # unreadable: kept as it is, for whoever wants to look at it
        with replacing(path) as handle:
            handle.write((json.dumps(report, indent=2) + "\n").encode())
            if earlier is not None and not same_evaluation(earlier, report):
                kept = claim_numbered(path, path)
    return kept


def kept_line(path: Path, kept: Path | None) -> str:
    """Gives the line that says where write_eval_json wrote, and where it kept an earlier evaluation."""
    line = f"wrote {path}"
    return line if kept is None else f"{line}; the different evaluation that was there is kept as {kept.name}"
