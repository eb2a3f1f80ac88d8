"""The negative ELBO of the categorical VAE, its parts, and code-usage diagnostics.

Per-example quantities have shape (batch,); the trainer averages them. The prior is the
uniform categorical over K categories for each of the N latent variables.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vae_gumbel.estimators import Estimator
from vae_gumbel.gumbel import Temperature
from vae_gumbel.model import CategoricalVAE


class NegativeElbo(NamedTuple):
    """Per-example negative ELBO in nats, split into its two terms."""

    loss: torch.Tensor  # (batch,) recon + kl
    recon: torch.Tensor  # (batch,) Bernoulli negative log-likelihood summed over pixels
    kl: torch.Tensor  # (batch,) KL(q(z|x) || uniform) summed over the N variables


def bernoulli_nll(decoder_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gives -log p(x|z) summed over pixels, (batch,), from Bernoulli logits (batch, D).

    Targets may be binary or grey levels in [0, 1] (then it is the cross-entropy).
    Computed in float32 from the logits, never through a sigmoid.
    """
    return F.binary_cross_entropy_with_logits(
        decoder_logits.float(), target.flatten(1).float(), reduction="none"
    ).sum(dim=-1)


def kl_per_variable(logits: torch.Tensor) -> torch.Tensor:
    """Gives KL(q || uniform) = sum_k q log(K q) for each variable, (batch, N), from logits (batch, N, K)."""
    log_q = torch.log_softmax(logits.float(), dim=-1)
    return (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(dim=-1)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Gives KL(q(z|x) || uniform prior) summed over the N variables, (batch,)."""
    return kl_per_variable(logits).sum(dim=-1)


def exp_concrete_log_density(
    log_sample: torch.Tensor, logits: torch.Tensor, tau: Temperature
) -> torch.Tensor:
    """Gives log p(y) of the ExpConcrete(softmax(logits), tau) density at y = log of a relaxed
    sample, (...,) from (..., K): computed in log space, so it stays finite at small tau.

    log p(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - tau y_k) - K logsumexp_k (l_k - tau y_k)
    (Maddison, Mnih & Teh 2017), with l the logits.
    """
    k = logits.shape[-1]
    tau = torch.as_tensor(tau, dtype=torch.float32, device=logits.device)
    terms = logits.float() - tau * log_sample.float()
    return math.lgamma(k) + (k - 1) * torch.log(tau) + terms.sum(-1) - k * torch.logsumexp(terms, dim=-1)


def relaxed_kl(
    log_sample: torch.Tensor, logits: torch.Tensor, tau: Temperature, prior_tau: float
) -> torch.Tensor:
    """Gives the single-sample KL estimate log q(y|x) - log p(y), summed over the N variables, (batch,).

    q is ExpConcrete(softmax(logits), tau) and the prior ExpConcrete(uniform, prior_tau); y is
    the log-space relaxed sample (batch, N, K) drawn from q.
    """
    log_q = exp_concrete_log_density(log_sample, logits, tau)
    log_prior = exp_concrete_log_density(log_sample, torch.zeros_like(logits), prior_tau)
    return (log_q - log_prior).sum(dim=-1)


def negative_elbo(
    decoder_logits: torch.Tensor, target: torch.Tensor, posterior_logits: torch.Tensor
) -> NegativeElbo:
    """Gives recon + KL per example for a decoded code and the posterior that produced it."""
    recon = bernoulli_nll(decoder_logits, target)
    kl = kl_to_uniform(posterior_logits)
    return NegativeElbo(loss=recon + kl, recon=recon, kl=kl)


class StepLosses(NamedTuple):
    """Batch means of one training step's losses; only ``loss_relaxed`` has a gradient."""

    loss_relaxed: torch.Tensor  # the objective being optimised (relaxed or straight-through)
    loss_unrelaxed: torch.Tensor  # true negative ELBO with the exact one-hot sample
    recon: torch.Tensor  # reconstruction term of the relaxed loss
    kl: torch.Tensor  # analytic KL term, shared by both losses


def relaxed_and_unrelaxed(
    model: CategoricalVAE,
    x: torch.Tensor,
    tau: Temperature,
    estimator: Estimator,
    generator: torch.Generator | None = None,
    prior_tau: float | None = None,
) -> StepLosses:
    """Gives the training objective and the exact discrete negative ELBO from one encoder pass.

    Both losses use the same noise draw: the estimator's z for the relaxed loss, and its
    exact one-hot sample (decoded under no_grad) for the unrelaxed one. When z already
    is that one-hot sample (straight-through family), the two losses coincide and the
    second decoder pass is skipped. With ``prior_tau`` the training objective's KL is the
    relaxed single-sample KL to an ExpConcrete prior of that temperature (a relaxed z only);
    the unrelaxed loss always uses the analytic KL, so it stays a true ELBO.
    """
    logits = model.encode(x)
    latent = estimator(logits, tau, generator=generator)
    relaxed = negative_elbo(model.decode(latent.z), x, logits)
    objective = relaxed.loss
    if prior_tau is not None:
        if latent.log_z is None:
            raise ValueError("the relaxed KL needs a relaxed sample: use it with estimator=gumbel_softmax")
        objective = relaxed.recon + relaxed_kl(latent.log_z, logits, tau, prior_tau)
    if latent.z_is_hard:
        loss_unrelaxed = relaxed.loss.detach().mean()
    else:
        with torch.no_grad():
            loss_unrelaxed = negative_elbo(model.decode(latent.hard), x, logits).loss.mean()
    return StepLosses(
        loss_relaxed=objective.mean(),
        loss_unrelaxed=loss_unrelaxed,
        recon=relaxed.recon.detach().mean(),
        kl=relaxed.kl.detach().mean(),
    )


def code_usage(codes: torch.Tensor) -> torch.Tensor:
    """Gives how often each category is used per variable, (N, K), from codes (batch, N, K)."""
    return codes.float().mean(dim=0)


def code_perplexity(usage: torch.Tensor) -> torch.Tensor:
    """Gives exp(entropy) of each variable's usage distribution, (N,): the effective number of
    categories in use, between 1 (collapsed) and K (all used equally)."""
    p = usage / usage.sum(dim=-1, keepdim=True)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(dim=-1)
    return entropy.exp()
