"""The negative ELBO of the categorical VAE, its parts, and the training objective built from them.

Per-example quantities have shape (..., batch): a plain model gives (batch,), a stack of M
models (batch, N, K logits with a leading member axis) gives (M, batch). The prior is the
uniform categorical over K categories for each of the N latent variables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from vae_gumbel.categories import log_softmax
from vae_gumbel.estimators import Estimator, LatentSample
from vae_gumbel.gumbel import Temperature
from vae_gumbel.model import CategoricalVAE

if TYPE_CHECKING:
    from vae_gumbel.config import ObjectiveConfig


class NegativeElbo(NamedTuple):
    """Per-example negative ELBO in nats, split into its two terms."""

    loss: torch.Tensor  # (..., batch) recon + kl
    recon: torch.Tensor  # (..., batch) Bernoulli negative log-likelihood summed over pixels
    kl: torch.Tensor  # (..., batch) KL(q(z|x) || uniform) summed over the N variables

    @classmethod
    def of(cls, recon: torch.Tensor, kl: torch.Tensor) -> NegativeElbo:
        """Gives the negative ELBO of its two terms: for a caller that has the KL already."""
        return cls(loss=recon + kl, recon=recon, kl=kl)


def bernoulli_nll(decoder_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gives -log p(x|z) summed over pixels, (...,), from Bernoulli logits (..., D).

    Targets may be binary or grey levels in [0, 1] (then it is the cross-entropy).
    Computed in float32 from the logits, never through a sigmoid (BernoulliNll).
    """
    return BernoulliNll.apply(decoder_logits.float(), target.float().expand_as(decoder_logits))


class BernoulliNll(torch.autograd.Function):
    """The Bernoulli negative log-likelihood summed over the last axis, with its gradient
    sigmoid(l) - t written out.

    softplus(l) - t l, with softplus(l) = max(l, 0) + log(1 + exp(-|l|)): the same function as
    ``binary_cross_entropy_with_logits``, which calls torch's ``log1p`` (5.5x slower than ``log``
    on the CPUs measured) and leaves autograd a chain of small kernels for its gradient. In float32,
    1 + exp(-|l|) drops only terms below 6e-8 nats a pixel (|l| > 16.6). On a 2-core AMD EPYC the
    default model's step took 0.93-0.95 of its time before in bf16, 0.96-0.97 in float32, and the
    test set's evaluation 0.88 (docs/performance.md).
    """

    @staticmethod
    def forward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = logits.abs().neg_().exp_().add_(1).log_()
        loss += logits.clamp_min(0)
        return loss.addcmul_(target, logits, value=-1).sum(dim=-1)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        logits, target = ctx.saved_tensors
        grad = grad.unsqueeze(-1)
        # Out of place, so that it differentiates again (create_graph=True).
        grad_logits = (torch.sigmoid(logits) - target) * grad if ctx.needs_input_grad[0] else None
        grad_target = -logits * grad if ctx.needs_input_grad[1] else None
        return grad_logits, grad_target


def kl_per_variable(logits: torch.Tensor) -> torch.Tensor:
    """Gives KL(q || uniform) = sum_k q log(K q) for each variable, (..., N), from logits (..., N, K)."""
    log_q = log_softmax(logits.float())
    return (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(dim=-1)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Gives KL(q(z|x) || uniform prior) summed over the N variables, (...,)."""
    return kl_per_variable(logits).sum(dim=-1)


def exp_concrete_log_density(
    log_sample: torch.Tensor, logits: torch.Tensor, tau: Temperature
) -> torch.Tensor:
    """Gives log p(y) of the ExpConcrete(softmax(logits), tau) density at y = log of a relaxed
    sample, (...,) from (..., K): computed in log space, so it stays finite at small tau.

    log p(y) = log (K-1)! + (K-1) log tau + sum_k (l_k - tau y_k) - K logsumexp_k (l_k - tau y_k)
    (Maddison, Mnih & Teh 2017), with l the logits. ``tau`` broadcasts against (..., K).
    """
    k = logits.shape[-1]
    tau = torch.as_tensor(tau, dtype=torch.float32, device=logits.device)
    terms = logits.float() - tau * log_sample.float()
    log_tau = torch.log(tau).expand_as(terms)[..., 0]  # a temperature per member, or one for all
    return math.lgamma(k) + (k - 1) * log_tau + terms.sum(-1) - k * torch.logsumexp(terms, dim=-1)


def relaxed_kl(
    log_sample: torch.Tensor, logits: torch.Tensor, tau: Temperature, prior_tau: float
) -> torch.Tensor:
    """Gives the single-sample KL estimate log q(y|x) - log p(y), summed over the N variables, (...,).

    q is ExpConcrete(softmax(logits), tau) and the prior ExpConcrete(uniform, prior_tau); y is
    the log-space relaxed sample (..., N, K) drawn from q.
    """
    log_q = exp_concrete_log_density(log_sample, logits, tau)
    log_prior = exp_concrete_log_density(log_sample, torch.zeros_like(logits), prior_tau)
    return (log_q - log_prior).sum(dim=-1)


def negative_elbo(
    decoder_logits: torch.Tensor, target: torch.Tensor, posterior_logits: torch.Tensor
) -> NegativeElbo:
    """Gives recon + KL per example for a decoded code and the posterior that produced it."""
    return NegativeElbo.of(bernoulli_nll(decoder_logits, target), kl_to_uniform(posterior_logits))


class StepLosses(NamedTuple):
    """Batch means of one training step's losses, (...,) per member; only ``loss_relaxed`` has a gradient."""

    loss_relaxed: torch.Tensor  # the objective being optimised (relaxed or straight-through)
    loss_unrelaxed: torch.Tensor  # true negative ELBO with the exact one-hot sample
    recon: torch.Tensor  # reconstruction term of the relaxed loss
    kl: torch.Tensor  # analytic KL term, shared by both losses


# The KL term the training objective uses, per example (..., batch): the analytic categorical KL,
# or the relaxed single-sample KL to an ExpConcrete prior (for a relaxed z only).
KLTerm = Callable[[NegativeElbo, LatentSample, torch.Tensor, Temperature, float], torch.Tensor]
KL_TERMS: dict[str, KLTerm] = {
    "analytic": lambda elbo, latent, logits, tau, prior_tau: elbo.kl,
    "relaxed": lambda elbo, latent, logits, tau, prior_tau: relaxed_kl(latent.log_z, logits, tau, prior_tau),
}
# The objective settings beside ``kl`` that each KL term reads.
KL_READS: dict[str, tuple[str, ...]] = {"analytic": (), "relaxed": ("prior_temperature",)}


@dataclass(frozen=True)
class Elbo:
    """The training objective: the negative ELBO of the estimator's z, tracked next to the exact
    discrete negative ELBO of the same draw.

    One encoder pass and one noise draw give both losses: the estimator's z for the relaxed
    loss, and its exact one-hot sample (decoded under no_grad) for the unrelaxed one. When z
    already is that one-hot sample (straight-through family), the two losses coincide and the
    second decoder pass is skipped. The unrelaxed loss always uses the analytic KL, so it stays
    a true ELBO.
    """

    estimator: Estimator
    kl: KLTerm = KL_TERMS["analytic"]
    prior_temperature: float = 0.5  # of the relaxed KL's ExpConcrete prior

    def __call__(
        self,
        model: CategoricalVAE,
        x: torch.Tensor,
        tau: Temperature,
        generator: torch.Generator | None = None,
    ) -> StepLosses:
        """Gives the losses of images x (..., batch, D) at temperature tau (broadcasting against
        (..., batch, N, K) logits)."""
        logits = model.encode(x)
        latent = self.estimator(logits, tau, generator=generator)
        relaxed = negative_elbo(model.decode(latent.z), x, logits)
        objective = relaxed.recon + self.kl(relaxed, latent, logits, tau, self.prior_temperature)
        if latent.z_is_hard:
            loss_unrelaxed = relaxed.loss.detach().mean(dim=-1)
        else:  # the same logits, so the same analytic KL: only the reconstruction differs
            with torch.no_grad():
                loss_unrelaxed = NegativeElbo.of(
                    bernoulli_nll(model.decode(latent.hard), x), relaxed.kl
                ).loss.mean(dim=-1)
        return StepLosses(
            loss_relaxed=objective.mean(dim=-1),
            loss_unrelaxed=loss_unrelaxed,
            recon=relaxed.recon.detach().mean(dim=-1),
            kl=relaxed.kl.detach().mean(dim=-1),
        )


OBJECTIVES: dict[str, type[Elbo]] = {"elbo": Elbo}


def build_objective(settings: ObjectiveConfig, estimator: Estimator) -> Elbo:
    """Gives the objective that ``objective.name`` names, with the KL term ``objective.kl``."""
    return OBJECTIVES[settings.name](
        estimator, kl=KL_TERMS[settings.kl], prior_temperature=settings.prior_temperature
    )


def code_perplexity(usage: torch.Tensor) -> torch.Tensor:
    """Gives exp(entropy) of each variable's usage distribution, (..., N), from (..., N, K): the
    effective number of categories in use, between 1 (collapsed) and K (all used equally)."""
    p = usage / usage.sum(dim=-1, keepdim=True)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(dim=-1)
    return entropy.exp()
