"""Bias and variance of gradient estimators on problems small enough to enumerate.

For logits (N, K) with K^N small, E_q[f(z)] = sum over every one-hot code z of q(z) f(z)
is exact, and so is its gradient. Each estimator's per-sample gradients of f(z) are compared
with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vae_gumbel.estimators import Estimator
from vae_gumbel.gumbel import Temperature

Objective = Callable[[torch.Tensor], torch.Tensor]  # codes (..., N, K) -> values (...)


def all_codes(latent_dim: int, categorical_dim: int) -> torch.Tensor:
    """Gives every one-hot code, (K^N, N, K)."""
    indices = torch.tensor(list(itertools.product(range(categorical_dim), repeat=latent_dim)))
    return torch.nn.functional.one_hot(indices, categorical_dim).float()


def exact_gradient(logits: torch.Tensor, f: Objective) -> torch.Tensor:
    """Gives d/dlogits of E_q[f(z)] for q = prod_n softmax(logits[n]), by enumeration, (N, K)."""
    leaf = logits.detach().clone().requires_grad_()
    codes = all_codes(*logits.shape)
    log_q = (codes * torch.log_softmax(leaf, dim=-1)).sum(dim=(-2, -1))
    (log_q.exp() * f(codes)).sum().backward()
    return leaf.grad


def sample_gradients(
    estimator: Estimator, logits: torch.Tensor, f: Objective, tau: Temperature, samples: int, seed: int = 0
) -> torch.Tensor:
    """Gives ``samples`` independent single-sample gradient estimates, (samples, N, K)."""
    leaf = logits.detach().expand(samples, *logits.shape).clone().requires_grad_()
    generator = torch.Generator().manual_seed(seed)
    f(estimator(leaf, tau, generator=generator).z).sum().backward()
    return leaf.grad


@dataclass
class GradientStats:
    bias: float  # ||mean estimate - exact gradient||
    variance: float  # E ||estimate - mean estimate||^2, summed over the logits
    cosine: float  # cosine between the mean estimate and the exact gradient
    exact_norm: float


def gradient_stats(
    estimator: Estimator,
    logits: torch.Tensor,
    f: Objective,
    tau: Temperature,
    samples: int = 20_000,
    seed: int = 0,
) -> GradientStats:
    """Gives the bias, variance and direction of an estimator's gradient of E_q[f(z)]."""
    exact = exact_gradient(logits, f)
    grads = sample_gradients(estimator, logits, f, tau, samples, seed)
    mean = grads.mean(dim=0)
    return GradientStats(
        bias=float((mean - exact).norm()),
        variance=float(((grads - mean) ** 2).sum(dim=(-2, -1)).mean()),
        cosine=float(torch.nn.functional.cosine_similarity(mean.flatten(), exact.flatten(), dim=0)),
        exact_norm=float(exact.norm()),
    )


def quadratic_objective(latent_dim: int, categorical_dim: int, seed: int = 0) -> Objective:
    """Gives f(z) = (w . z - c)^2 with fixed random w and c: nonlinear, so relaxations are biased."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(latent_dim * categorical_dim, generator=generator)
    target = float(torch.randn((), generator=generator)) * 2

    def f(codes: torch.Tensor) -> torch.Tensor:
        return (codes.flatten(-2) @ weights - target) ** 2

    return f
