"""Gradient estimators: how a posterior sample reaches the decoder and sends gradients back.

Each estimator draws one categorical sample and returns what the decoder sees in the
training pass (``z``, differentiable in the logits) together with the exact one-hot sample
(``hard``), from which the trainer scores the unrelaxed loss.

- ``gumbel_softmax``: the relaxed sample (Jang et al. 2017; Maddison et al. 2017).
- ``straight_through``: the one-hot sample forward, the relaxed sample's gradient backward.
- ``softmax_straight_through``: the one-hot sample forward, the gradient of softmax(logits / tau)
  backward, with no noise in it: the original straight-through estimator (Bengio et al. 2013)
  with a temperature, the "ST" of the ReinMax experiments.
- ``gumbel_rao``: straight-through with the relaxed gradient averaged over M Gumbel draws
  given the sampled category (Paulus, Maddison & Krause, ICLR 2021): same expectation as
  straight-through, lower variance.
- ``reinmax``: the second-order straight-through estimator of Liu et al. (NeurIPS 2023).
- ``reinmax_rao``: ReinMax with its midpoint Jacobian Rao-Blackwellised over Gumbel draws given the
  sampled category (Wang & Bui, arXiv 2603.08257: "ReinMax-Rao", as their public code computes it).
- ``decoupled_straight_through``: straight-through Gumbel-Softmax with one temperature for the
  forward sample and another for the backward pass (Shah et al., arXiv 2410.13331).
- ``gapped_straight_through``: GST-1.0, straight-through from logits moved so that the sampled
  category leads the others by a gap, with no resampling (Fan et al., ICML 2022).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from vae_gumbel.categories import one_hot, softmax
from vae_gumbel.gumbel import (
    Temperature,
    compute_dtype,
    conditional_gumbel,
    gapped_logits,
    gumbel_max,
    gumbel_softmax_sample,
    sample_gumbel,
    straight_through,
)

if TYPE_CHECKING:
    from vae_gumbel.config import EstimatorConfig


class LatentSample(NamedTuple):
    """A training-pass code and the exact discrete code of the same draw."""

    z: torch.Tensor  # (batch, N, K) fed to the decoder, carries the gradient
    hard: torch.Tensor  # (batch, N, K) exact one-hot sample, no gradient
    z_is_hard: bool  # True when z's forward value is exactly ``hard``
    log_z: torch.Tensor | None = None  # (batch, N, K) log of a relaxed z, for the relaxed KL


Estimator = Callable[..., LatentSample]


def gumbel_softmax_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the relaxed sample as z: a biased, low-variance, fully differentiable path."""
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    return LatentSample(z=sample.soft, hard=sample.hard, z_is_hard=False, log_z=sample.log_soft)


def straight_through_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the exact one-hot sample as z, with the relaxed sample's gradient."""
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    return LatentSample(z=straight_through(sample.soft, sample.hard), hard=sample.hard, z_is_hard=True)


def softmax_straight_through_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the one-hot D ~ softmax(logits) as z, with the gradient of softmax(logits / tau): given
    D the gradient is deterministic, since no Gumbel noise enters the backward pass."""
    hard = gumbel_max(logits, one_hot=True, generator=generator)
    soft = softmax(logits.to(compute_dtype(logits.dtype)) / tau).to(logits.dtype)
    return LatentSample(z=straight_through(soft, hard), hard=hard, z_is_hard=True)


def gumbel_rao_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None, samples: int = 10
) -> LatentSample:
    """Gives the one-hot sample as z with the relaxed gradient averaged over ``samples``
    conditional Gumbel draws that share its argmax (a Rao-Blackwellised straight-through)."""
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    noise = conditional_gumbel(logits, sample.index, samples, generator=generator)
    soft_mean = softmax((logits.float() + noise) / tau).mean(dim=0).to(logits.dtype)
    return LatentSample(z=straight_through(soft_mean, sample.hard), hard=sample.hard, z_is_hard=True)


def reinmax_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the one-hot sample D ~ softmax(logits) as z, with ReinMax's gradient
    2 J(pi1) - J(pi0) / 2, where pi0 = softmax(logits), pi1 = (D + softmax(logits / tau)) / 2
    and J(p) is the softmax Jacobian at p (Heun's method instead of straight-through's Euler step).
    """
    sample = gumbel_softmax_sample(logits, 1.0, generator=generator)  # D: an exact draw from softmax(logits)
    compute = logits.float()
    pi0 = softmax(compute)
    pi1 = 0.5 * (sample.hard + softmax(compute / tau))
    # Same value as pi1, with the Jacobian of a softmax evaluated at pi1.
    log_pi1 = torch.log(pi1.clamp_min(torch.finfo(pi1.dtype).tiny))
    pi1 = softmax((log_pi1 - compute).detach() + compute)
    return heun_step(sample.hard, pi0, pi1, logits.dtype)


def reinmax_rao_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None, samples: int = 100
) -> LatentSample:
    """Gives the one-hot sample D ~ softmax(logits) as z, with ReinMax's gradient in which the
    Jacobian at the midpoint is Rao-Blackwellised: 2 E[J(softmax((m + G) / tau)) | D] / tau - J(pi0) / 2,
    where m = log((D + pi0) / 2), pi0 = softmax(logits), J(p) is the softmax Jacobian at p, and the
    expectation is the mean over ``samples`` draws of G given argmax(m + G) = D (Wang & Bui's
    ReinMax-Rao, ``reinmax_v3`` with ``rao_gumbel_v3`` in their code). ReinMax takes the Jacobian at
    the midpoint itself, (D + softmax(logits / tau)) / 2."""
    sample = gumbel_softmax_sample(logits, 1.0, generator=generator)  # D: an exact draw from softmax(logits)
    compute = logits.float()
    pi0 = softmax(compute)
    midpoint = torch.log((0.5 * (sample.hard + pi0.detach())).clamp_min(torch.finfo(compute.dtype).tiny))
    noise = conditional_gumbel(midpoint, sample.index, samples, generator=generator)
    # The value of softmax((m + G) / tau), with the Jacobian it has in m, taken in the logits.
    shifted = midpoint + noise + (compute - compute.detach())
    pi1 = softmax(shifted / tau).mean(dim=0)
    return heun_step(sample.hard, pi0, pi1, logits.dtype)


def heun_step(hard: torch.Tensor, pi0: torch.Tensor, pi1: torch.Tensor, dtype: torch.dtype) -> LatentSample:
    """Gives the one-hot ``hard`` as z with ReinMax's gradient 2 J(pi1) - J(pi0) / 2, the Jacobians
    being those that pi0 and pi1 carry in the logits (ReinMax and ReinMax-Rao differ only in pi1)."""
    return LatentSample(
        z=straight_through((2.0 * pi1 - 0.5 * pi0).to(dtype), hard), hard=hard, z_is_hard=True
    )


def decoupled_straight_through_estimator(
    logits: torch.Tensor,
    tau: Temperature,
    generator: torch.Generator | None = None,
    forward_temperature: float = 1.0,
) -> LatentSample:
    """Gives the one-hot argmax(logits / tau_f + G) as z, an exact draw from softmax(logits / tau_f),
    with the gradient of softmax(logits / tau + G) from the same noise G (Decoupled ST-GS; the
    paper's form logits / tau + G, not (logits + G) / tau). tau_f = ``forward_temperature`` sets how
    random the forward sample is, tau (the schedule's) how the gradient spreads over categories.
    With tau_f = 1 the forward sample is an exact draw from q; otherwise the decoder trains on
    draws from a tempered q while the KL, the unrelaxed loss's KL and every test number use q."""
    compute = logits.to(compute_dtype(logits.dtype))
    noise = sample_gumbel(logits.shape, dtype=compute.dtype, device=logits.device, generator=generator)
    hard = gumbel_max(compute / forward_temperature, one_hot=True, noise=noise).to(logits.dtype)
    soft = softmax(compute / tau + noise).to(logits.dtype)
    return LatentSample(z=straight_through(soft, hard), hard=hard, z_is_hard=True)


def gapped_straight_through_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None, gap: float = 1.0
) -> LatentSample:
    """Gives the one-hot D ~ softmax(logits) as z, with the gradient of softmax(gapped / tau), where
    ``gapped`` equals the logits in the backward pass and, in value, has D's logit raised to the
    largest and every other capped ``gap`` below it (GST-1.0 for gap = 1): a deterministic stand-in
    for the Gumbel-Softmax sample given D, with no noise of its own to add variance."""
    compute = logits.to(compute_dtype(logits.dtype))
    index = gumbel_max(compute, generator=generator)
    hard = one_hot(index, logits.shape[-1], logits.dtype)
    moved = gapped_logits(compute.detach(), index, gap)
    soft = softmax((compute + (moved - compute.detach())) / tau).to(logits.dtype)
    return LatentSample(z=straight_through(soft, hard), hard=hard, z_is_hard=True)


@dataclass(frozen=True)
class EstimatorKind:
    """A registered estimator: how to build it from its settings, whether its z is a relaxed
    sample (then it also gives log z, which the relaxed KL needs), and which of the estimator
    settings beside ``name`` it reads."""

    build: Callable[[EstimatorConfig], Estimator]
    relaxed: bool = False
    reads: tuple[str, ...] = ()


ESTIMATORS: dict[str, EstimatorKind] = {
    "gumbel_softmax": EstimatorKind(lambda settings: gumbel_softmax_estimator, relaxed=True),
    "straight_through": EstimatorKind(lambda settings: straight_through_estimator),
    "softmax_straight_through": EstimatorKind(lambda settings: softmax_straight_through_estimator),
    "gumbel_rao": EstimatorKind(
        lambda settings: functools.partial(gumbel_rao_estimator, samples=settings.rao_samples),
        reads=("rao_samples",),
    ),
    "reinmax": EstimatorKind(lambda settings: reinmax_estimator),
    "reinmax_rao": EstimatorKind(
        lambda settings: functools.partial(reinmax_rao_estimator, samples=settings.rao_samples),
        reads=("rao_samples",),
    ),
    "decoupled_straight_through": EstimatorKind(
        lambda settings: functools.partial(
            decoupled_straight_through_estimator, forward_temperature=settings.forward_temperature
        ),
        reads=("forward_temperature",),
    ),
    "gapped_straight_through": EstimatorKind(
        lambda settings: functools.partial(gapped_straight_through_estimator, gap=settings.gap),
        reads=("gap",),
    ),
}


def build_estimator(settings: EstimatorConfig) -> Estimator:
    """Gives the estimator that ``estimator.name`` names, with its settings."""
    return ESTIMATORS[settings.name].build(settings)
