"""The categorical VAE: an MLP encoder to N x K logits and an MLP decoder to Bernoulli logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vae_gumbel.gumbel import Temperature, gumbel_max, gumbel_softmax

IMAGE_PIXELS = 28 * 28


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Gives Linear layers of the given widths with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class CategoricalVAE(nn.Module):
    """A VAE whose code is N independent categorical variables with K categories each.

    The encoder's last layer is linear, so logits may take any sign; the decoder returns
    Bernoulli logits, to be scored with ``binary_cross_entropy_with_logits``.
    """

    def __init__(
        self,
        latent_dim: int = 30,
        categorical_dim: int = 10,
        hidden: Sequence[int] = (512, 256),
        input_dim: int = IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if categorical_dim < 2:
            raise ValueError(f"categorical_dim must be >= 2, got {categorical_dim}")
        if any(width < 1 for width in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(hidden)}")
        self.latent_dim = latent_dim
        self.categorical_dim = categorical_dim
        self.hidden = tuple(hidden)
        self.input_dim = input_dim
        code_size = latent_dim * categorical_dim
        self.encoder = mlp([input_dim, *hidden, code_size])
        self.decoder = mlp([code_size, *reversed(hidden), input_dim])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Gives the posterior logits (batch, N, K) of images x: (batch, 784) or (batch, 1, 28, 28)."""
        logits = self.encoder(x.flatten(1))
        return logits.view(-1, self.latent_dim, self.categorical_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Gives Bernoulli pixel logits (batch, 784) for codes z: (batch, N, K)."""
        return self.decoder(z.flatten(1))

    def sample_relaxed(
        self, logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Gives a Gumbel-Softmax sample (batch, N, K) of the posterior."""
        return gumbel_softmax(logits, tau, hard=False, generator=generator)

    def sample_straight_through(
        self, logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Gives a one-hot sample (batch, N, K) carrying the relaxed sample's gradient."""
        return gumbel_softmax(logits, tau, hard=True, generator=generator)

    def sample_discrete(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gives an exact one-hot posterior sample (batch, N, K), without gradient."""
        return gumbel_max(logits, one_hot=True, generator=generator)

    def sample_prior(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Gives one-hot codes (num_samples, N, K) from the uniform categorical prior."""
        if device is None:
            device = next(self.parameters()).device
        index = torch.randint(
            self.categorical_dim,
            (num_samples, self.latent_dim),
            generator=generator,
            device=device,
        )
        return nn.functional.one_hot(index, self.categorical_dim).float()

    def architecture(self) -> dict[str, int | list[int]]:
        """Gives the sizes that a checkpoint must match to load into this model."""
        return {
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "categorical_dim": self.categorical_dim,
            "hidden": list(self.hidden),
        }
