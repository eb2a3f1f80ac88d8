"""The Gumbel distribution and the sampling tricks built on it.

Everything here is a pure function of tensors. Randomness comes from an optional
``torch.Generator``; without one the global generator is used.

Noise is always drawn in float32 (float64 for float64 inputs) and the relaxed sample
is computed at that precision, then cast back: in bfloat16 the uniforms near 1 would
round to 1 and the softmax at small temperatures would lose the winning category.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vae_gumbel import categories
from vae_gumbel.categories import argmax, log_softmax

Temperature = float | torch.Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Gives the precision noise and relaxed samples are computed in for inputs of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def gumbel_log_pdf(x: torch.Tensor, mu: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Gives log p(x) of Gumbel(mu, beta): -z - exp(-z) - log(beta), z = (x - mu) / beta."""
    z = (x - mu) / beta
    return -(z + torch.exp(-z)) - math.log(beta)


def gumbel_pdf(x: torch.Tensor, mu: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Gives the density of Gumbel(mu, beta) at x."""
    return gumbel_log_pdf(x, mu, beta).exp()


def gumbel_cdf(x: torch.Tensor, mu: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Gives P(G <= x) = exp(-exp(-(x - mu) / beta))."""
    return torch.exp(-torch.exp(-(x - mu) / beta))


def gumbel_icdf(u: torch.Tensor, mu: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Gives the quantile mu - beta * log(-log(u)) for u in (0, 1)."""
    standard = -torch.log(-torch.log(u))
    if mu == 0.0 and beta == 1.0:  # the sampler's case: two operators fewer, the same numbers
        return standard
    return mu + beta * standard


def sample_gumbel(
    shape: torch.Size | tuple[int, ...],
    mu: float = 0.0,
    beta: float = 1.0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gives Gumbel(mu, beta) draws by inverse transform; never inf or NaN.

    The uniforms are clamped to [tiny, 1 - eps] of the noise precision, as
    ``torch.distributions.Gumbel`` does, so both logarithms stay finite.
    """
    noise_dtype = compute_dtype(dtype)
    u = torch.rand(shape, dtype=noise_dtype, device=device, generator=generator)
    finfo = torch.finfo(noise_dtype)
    u = u.clamp(min=finfo.tiny, max=1.0 - finfo.eps)
    return gumbel_icdf(u, mu, beta).to(dtype)


def gumbel_max(
    logits: torch.Tensor,
    *,
    one_hot: bool = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gives an exact categorical draw, argmax(logits + G), over the last axis.

    logits: (..., K) unnormalised log-probabilities. Returns indices (...) or, with
    ``one_hot=True``, one-hot vectors (..., K) in the dtype of ``logits``. ``noise``: Gumbel
    draws to use (broadcasting against ``logits``, e.g. the same for every member of a stack)
    instead of fresh ones.
    """
    compute = compute_dtype(logits.dtype)
    if noise is None:
        noise = sample_gumbel(logits.shape, dtype=compute, device=logits.device, generator=generator)
    index = argmax(logits.detach().to(compute) + noise)
    if one_hot:
        return categories.one_hot(index, logits.shape[-1], logits.dtype)
    return index


class GumbelSoftmaxSample(NamedTuple):
    """One draw of Gumbel noise seen four ways; ``hard`` is the argmax of ``soft``."""

    soft: torch.Tensor  # (..., K) softmax((logits + G) / tau), differentiable
    hard: torch.Tensor  # (..., K) exact one-hot of the same draw, no gradient
    index: torch.Tensor  # (...) the chosen category
    log_soft: torch.Tensor  # (..., K) log of ``soft``, exact even where ``soft`` underflows


def gumbel_softmax_sample(
    logits: torch.Tensor, tau: Temperature, *, generator: torch.Generator | None = None
) -> GumbelSoftmaxSample:
    """Gives the relaxed sample and the exact one-hot sample from one noise draw.

    logits: (..., K); the softmax runs over the last axis only. ``tau`` is a positive
    float or 0-d tensor (a learned temperature passes its gradient through).
    """
    compute = compute_dtype(logits.dtype)
    noise = sample_gumbel(logits.shape, dtype=compute, device=logits.device, generator=generator)
    perturbed = logits.to(compute) + noise
    log_soft = log_softmax(perturbed / tau)
    soft = log_soft.exp().to(logits.dtype)
    index = argmax(perturbed.detach())
    hard = categories.one_hot(index, logits.shape[-1], logits.dtype)
    return GumbelSoftmaxSample(soft=soft, hard=hard, index=index, log_soft=log_soft)


def conditional_gumbel(
    logits: torch.Tensor,
    index: torch.Tensor,
    samples: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gives Gumbel noise G drawn given that argmax(logits + G) = ``index``, (samples, ..., K).

    logits: (..., K); index: (...). No gradient flows through the noise. In terms of the
    normalised logits log p, the maximum of log p + G is Gumbel(0) and independent of where
    it is, and every other entry is a Gumbel with its own location truncated below that
    maximum: max = -log E_d, others = -log(E_d + E_i / p_i), with E exponential(1).
    """
    compute = compute_dtype(logits.dtype)
    log_p = log_softmax(logits.detach().to(compute))
    shape = (samples, *logits.shape)
    finfo = torch.finfo(compute)
    uniform = torch.rand(shape, dtype=compute, device=logits.device, generator=generator)
    exponential = -torch.log(uniform.clamp(min=finfo.tiny, max=1.0 - finfo.eps))
    chosen = categories.one_hot(index, logits.shape[-1], torch.bool).expand(shape)
    e_max = exponential.masked_fill(~chosen, 0.0).sum(dim=-1, keepdim=True)
    perturbed = torch.where(chosen, -torch.log(e_max), -torch.log(e_max + exponential * torch.exp(-log_p)))
    return perturbed - log_p


def gapped_logits(logits: torch.Tensor, index: torch.Tensor, gap: float = 1.0) -> torch.Tensor:
    """Gives the logits moved so that category ``index`` leads by at least ``gap``: its logit raised
    to the largest, every other capped at the largest minus ``gap`` (Fan et al., ICML 2022).

    logits: (..., K); index: (...). Logits already ``gap`` or more below the largest stay put, so
    the move is as small as the gap allows.
    """
    top = logits.max(dim=-1, keepdim=True).values
    chosen = categories.one_hot(index, logits.shape[-1], torch.bool)
    return torch.where(chosen, top, torch.minimum(logits, top - gap))


def straight_through(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Gives ``hard`` in the forward pass with the gradient of ``soft`` in the backward pass.

    Written as hard + (soft - soft.detach()) because s - s is exactly 0 in floating
    point, so the forward value is exactly one-hot (hard - s.detach() + s can round).
    """
    return hard.detach() + (soft - soft.detach())


def gumbel_softmax(
    logits: torch.Tensor,
    tau: Temperature,
    hard: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gives a Gumbel-Softmax sample over the last axis; straight-through with ``hard=True``.

    logits: (..., K). The soft sample is softmax((logits + G) / tau); the hard sample is
    its exact one-hot argmax with the soft sample's gradient.
    """
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    if hard:
        return straight_through(sample.soft, sample.hard)
    return sample.soft
