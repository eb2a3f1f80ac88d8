"""Optimizers: torch's own, over the weights of a stack of models, each member with its own settings.

The stacked weights (M, ...) are what the forward pass uses and what autograd fills with
gradients. The optimizer sees each member's slice of them as parameters of its own (views
into the same memory), in one parameter group per distinct setting, so members that share
their settings are updated by one fused call, and each member's optimizer state reads and
loads in the format of a single model's optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vae_gumbel.config import OptimConfig


@dataclass(frozen=True)
class OptimizerKind:
    """A registered optimizer class and the devices where it has a fused kernel (one pass over
    all parameters instead of a loop of small ops)."""

    cls: type[torch.optim.Optimizer]
    fused_devices: tuple[str, ...] = ()


OPTIMIZERS: dict[str, OptimizerKind] = {
    "adam": OptimizerKind(torch.optim.Adam, fused_devices=("cpu", "cuda")),
    "radam": OptimizerKind(torch.optim.RAdam),
}

# Options that say how an update runs on a device, not what it computes.
EXECUTION_OPTIONS = ("fused", "foreach", "capturable", "differentiable")


def hyperparameters(settings: OptimConfig) -> dict[str, Any]:
    """Gives the settings of one member's updates, as torch's optimizers name them."""
    return {
        "lr": settings.lr,
        "betas": tuple(settings.betas),
        "eps": settings.eps,
        "weight_decay": settings.weight_decay,
    }


class StackOptimizer:
    """A torch optimizer over the members of stacked parameters, one parameter group per setting.

    ``stacked``: the stack's parameters, each (M, ...). ``settings``: one OptimConfig per member.
    With ``capturable`` the step counts live on the device, as a CUDA graph of the step needs.
    """

    def __init__(
        self,
        stacked: Sequence[torch.Tensor],
        settings: Sequence[OptimConfig],
        device: torch.device,
        capturable: bool = False,
    ) -> None:
        kind = OPTIMIZERS[settings[0].name]
        self.stacked = list(stacked)
        # members[m][i] is member m's slice of stacked parameter i: a leaf view of its memory.
        self.members = [[p.detach()[m] for p in self.stacked] for m in range(len(settings))]
        groups: dict[tuple, dict[str, Any]] = {}
        for views, member in zip(self.members, settings, strict=True):
            options = hyperparameters(member)
            groups.setdefault(tuple(options.items()), {"params": [], **options})["params"].extend(views)
        self.group_of = [list(groups).index(tuple(hyperparameters(member).items())) for member in settings]
        self.execution = {"capturable": capturable}
        if device.type in kind.fused_devices:
            self.execution["fused"] = True
        self.kind = kind
        self.optimizer = kind.cls(list(groups.values()), **self.execution)

    def zero_grad(self) -> None:
        for parameter in self.stacked:
            parameter.grad = None

    def step(self) -> None:
        """Updates every member from the stacked gradients of the last backward pass."""
        for m, views in enumerate(self.members):
            for view, parameter in zip(views, self.stacked, strict=True):
                view.grad = parameter.grad[m]
        self.optimizer.step()

    def member_options(self, m: int) -> dict[str, Any]:
        """Gives member m's settings and execution options, as its parameter group holds them."""
        group = self.optimizer.param_groups[self.group_of[m]]
        return {key: value for key, value in group.items() if key != "params"}

    def member_state(self, m: int) -> dict[str, Any]:
        """Gives member m's optimizer state as a single model's optimizer would save it."""
        state = self.optimizer.state
        return {
            "state": {i: dict(state[view]) for i, view in enumerate(self.members[m]) if view in state},
            "param_groups": [{**self.member_options(m), "params": list(range(len(self.members[m])))}],
        }

    def load_member_state(self, m: int, saved: dict[str, Any]) -> None:
        """Loads a single model's optimizer state (moments and step counts) into member m.

        The member keeps its own settings (learning rate, betas, ...) and this run's way of
        executing the update, so a checkpoint written on a CPU resumes under a CUDA graph.
        """
        options = self.member_options(m)
        # torch's own loading puts each value on the device and in the dtype this run needs.
        scratch = self.kind.cls(self.members[m], **options)
        scratch.load_state_dict(
            {
                "state": saved["state"],
                "param_groups": [{**options, "params": saved["param_groups"][0]["params"]}],
            }
        )
        for view in self.members[m]:
            if view in scratch.state:
                self.optimizer.state[view] = scratch.state[view]

    def reset_member(self, m: int) -> None:
        """Zeroes member m's moments in place: with zero weights and no gradient, it stays put."""
        for view in self.members[m]:
            for value in self.optimizer.state.get(view, {}).values():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    value.zero_()
