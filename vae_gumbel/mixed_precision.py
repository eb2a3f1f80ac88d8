"""bf16 training with float32 weights: a twin of the model in bf16 computes the step.

Under bf16 autocast each matmul casts its float32 weight (and bias) to bf16, and the backward pass
casts each gradient back to float32: two operators and an autograd node per parameter and step,
three more for a decoder that runs twice (autocast reuses a cast only for a leaf parameter, and a
stack's weights reach the matmul as views). The twin holds the same weights as bf16 leaves: one
foreach copy refreshes them all before the step, and one copies their gradients back into the
float32 gradients after it. The roundings are the same as autocast's, so the step computes the same
numbers; the optimizer and every checkpoint see only the float32 model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Bf16Twin:
    """A bf16 copy of ``model`` that computes forward and backward passes for it.

    Each bf16 weight has its float32 weight's shape and strides (a stack keeps its matrices in the
    memory order of their gradients), less the member axis of a stack of one, and each float32
    gradient it hands back has its weight's, kept from step to step.
    """

    def __init__(self, model: nn.Module) -> None:
        self.weights = list(model.parameters())
        self.model = copy.deepcopy(model)
        # A stack of one computes as the plain model it holds: its twin's weights drop the member
        # axis, so that the matmuls read them as they are, without a squeeze of each weight forward
        # and its undoing backward (30 of the default model's 290 operators a step).
        plain = getattr(model, "stack_size", None) == 1
        self.sources = [weight.squeeze(0) if plain else weight for weight in self.weights]
        with torch.no_grad():
            for (name, _), source in zip(list(self.model.named_parameters()), self.sources, strict=True):
                module_name, _, attribute = name.rpartition(".")
                low = torch.empty_like(source, dtype=torch.bfloat16, memory_format=torch.preserve_format)
                setattr(self.model.get_submodule(module_name), attribute, nn.Parameter(low))
        self.low = list(self.model.parameters())
        self.gradients = [torch.empty_like(w, memory_format=torch.preserve_format) for w in self.weights]
        self.targets = [
            grad.view(source.shape) for grad, source in zip(self.gradients, self.sources, strict=True)
        ]

    @torch.no_grad()
    def refresh(self) -> None:
        """Copies the float32 weights into the twin, rounding to bf16; clears its gradients."""
        torch._foreach_copy_(self.low, self.sources)
        for low in self.low:
            low.grad = None

    @torch.no_grad()
    def hand_back_gradients(self) -> None:
        """Gives each float32 weight its twin's gradient, in float32; a weight whose twin got none
        keeps none, as under autocast."""
        pairs = [(i, low.grad) for i, low in enumerate(self.low) if low.grad is not None]
        if not pairs:
            return
        torch._foreach_copy_([self.targets[i] for i, _ in pairs], [grad for _, grad in pairs])
        for i, _ in pairs:
            self.weights[i].grad = self.gradients[i]
