"""The categorical VAE: an MLP encoder to N x K logits and an MLP decoder to Bernoulli logits.

Its weights may carry a leading member axis: ``stack([model_1, ..., model_M])`` gives one
model whose every weight is (M, ...), which runs M independent models on x (M, batch, D) in
one batched matmul per layer. Member m's weights, sliced out, are exactly model m's
``state_dict``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from vae_gumbel.config import ModelConfig

IMAGE_PIXELS = 28 * 28


class Linear(nn.Linear):
    """``nn.Linear`` that also runs a stack: weight (M, out, in) and bias (M, out) map x (M, batch, in)
    to (M, batch, out), member by member."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dim() == 2:
            return F.linear(x, self.weight, self.bias)
        if self.weight.shape[0] == 1:  # a stack of one: the plain layer's arithmetic, a view's gradient
            return F.linear(x, self.weight.squeeze(0), self.bias.squeeze(0))
        return torch.baddbmm(self.bias.unsqueeze(-2), x, self.weight.transpose(-1, -2))


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Gives Linear layers of the given widths with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class CategoricalVAE(nn.Module):
    """A VAE whose code is N independent categorical variables with K categories each.

    The encoder's last layer is linear, so logits may take any sign; the decoder returns
    Bernoulli logits, to be scored with ``objectives.bernoulli_nll`` (the cross-entropy with logits).
    """

    def __init__(
        self,
        latent_dim: int = 30,
        categorical_dim: int = 10,
        hidden: Sequence[int] = (512, 256),
        input_dim: int = IMAGE_PIXELS,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.categorical_dim = categorical_dim
        self.hidden = tuple(hidden)
        self.input_dim = input_dim
        code_size = latent_dim * categorical_dim
        self.encoder = mlp([input_dim, *hidden, code_size])
        self.decoder = mlp([code_size, *reversed(hidden), input_dim])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Gives the posterior logits (..., batch, N, K) of flat images x: (..., batch, D)."""
        return self.encoder(x).unflatten(-1, (self.latent_dim, self.categorical_dim))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Gives Bernoulli pixel logits (..., batch, D) for codes z: (..., batch, N, K)."""
        return self.decoder(z.flatten(-2))

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

    def architecture(self) -> dict[str, str | int | list[int]]:
        """Gives what a checkpoint must match to load into this model: its kind and sizes."""
        return {
            "name": "mlp",
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "categorical_dim": self.categorical_dim,
            "hidden": list(self.hidden),
        }


# Each model kind: how to build it from its settings and the size of a flattened image.
MODELS: dict[str, Callable[[ModelConfig, int], CategoricalVAE]] = {
    "mlp": lambda settings, input_dim: CategoricalVAE(
        settings.latent_dim, settings.categorical_dim, settings.hidden, input_dim
    ),
}


def build_model(settings: ModelConfig, input_dim: int = IMAGE_PIXELS) -> CategoricalVAE:
    """Gives a freshly initialised model of the kind ``model.name`` names (drawing from the global
    random generator)."""
    return MODELS[settings.name](settings, input_dim)


def model_with_weights(architecture: dict, state: dict[str, torch.Tensor]) -> CategoricalVAE:
    """Gives a model of a checkpoint's ``architecture`` holding the weights ``state`` (its tensors
    become the model's parameters). Nothing is initialised, so no random number is drawn."""
    from vae_gumbel.config import ModelConfig  # the schema imports MODELS from here

    settings = ModelConfig(
        name=architecture.get("name", "mlp"),
        latent_dim=architecture["latent_dim"],
        categorical_dim=architecture["categorical_dim"],
        hidden=list(architecture["hidden"]),
    )
    with torch.device("meta"):
        model = MODELS[settings.name](settings, architecture["input_dim"])
    model.load_state_dict(state, assign=True)
    return model


def stack_size(model: nn.Module) -> int:
    """Gives how many models a stacked model holds (1 for a plain model, which runs inputs with a
    leading member axis of 1 just as well)."""
    return getattr(model, "stack_size", 1)


def stack(models: Sequence[CategoricalVAE]) -> CategoricalVAE:
    """Gives one model whose weights are the given models' weights stacked on a leading member axis.

    A stack of several keeps each matrix (M, out, in) in the memory order of (M, in, out), the
    order in which the batched matmul's backward pass gives its gradient: autograd then takes
    that gradient as it is instead of copying it into the weight's order on every step.
    """
    stacked = copy.deepcopy(models[0])
    states = [model.state_dict() for model in models]
    for name, _ in list(stacked.named_parameters()):
        module_name, _, attribute = name.rpartition(".")
        module = stacked.get_submodule(module_name)
        values = [state[name] for state in states]
        if len(models) > 1 and values[0].dim() == 2:
            weight = torch.stack([value.mT for value in values]).mT
        else:
            weight = torch.stack(values)
        setattr(module, attribute, nn.Parameter(weight))
    stacked.stack_size = len(models)
    return stacked


def member_state(
    stacked: nn.Module, index: int, state: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Gives member ``index``'s weights of a stacked model as its own ``state_dict``: views of the
    model's ``state_dict``, or of ``state``, a copy of it."""
    state = stacked.state_dict() if state is None else state
    return {name: value[index] for name, value in state.items()}


def unstack(stacked: CategoricalVAE, index: int) -> CategoricalVAE:
    """Gives member ``index`` of a stacked model as a model of its own (a copy of its weights)."""
    state = {
        name: value.clone(memory_format=torch.contiguous_format)
        for name, value in member_state(stacked, index).items()
    }
    return model_with_weights(stacked.architecture(), state)
