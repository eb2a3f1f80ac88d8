"""Optimizers: torch's updates (RAdam's, on a CPU, through Adam's fused kernel), over the weights of a
stack of models, each member with its own settings.

The stacked weights (M, ...) are what the forward pass uses and what autograd fills with
gradients. The optimizer sees each block of consecutive members that share their settings as
parameters of its own (views of the members a:b, into the same memory), in one parameter group
per distinct setting. Few large tensors, not one per member, is what keeps torch's fused and
foreach updates fast, since they take a bounded number of tensors per kernel launch: on an H200 the
update of a stack of 64 members seen one by one took 22 launches and 1.84 ms, seen as 12 tensors 4
launches and 0.64 ms (docs/performance.md). Each member's optimizer state still reads and loads in
the format of a single model's optimizer.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vae_gumbel.config import OptimConfig


def defaults_of(optimizer: type[torch.optim.Optimizer]) -> dict[str, Any]:
    """Gives a torch optimizer's settings and their defaults, from its signature: what each parameter
    group of ours holds beside the group's own values, as that optimizer's groups do."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(optimizer).parameters.items()
        if parameter.default is not parameter.empty
    }


class FusedAdam:
    """torch.optim.Adam(fused=True)'s update, by the kernel it calls, without torch.optim around it.

    Every method of a torch.optim optimizer imports ``torch._dynamo`` on its first call (they are
    wrapped to keep torch.compile out of them), which costs a run that never compiles 0.9-1.1 s of
    a 2-core CPU's start-up and more where imports are slow (docs/performance.md). This class
    calls the same kernel, ``torch._fused_adam_``, once per parameter group, and keeps its groups
    and state as torch.optim.Adam does (``param_groups``, ``state``: the step count a float32
    scalar on the parameter's device, ``exp_avg``, ``exp_avg_sq``), so its checkpoints are the same.
    """

    # The torch optimizer whose update, settings and state this one has.
    of: type[torch.optim.Optimizer] = torch.optim.Adam

    def __init__(
        self, groups: Sequence[dict[str, Any]], capturable: bool = False, fused: bool = True
    ) -> None:
        if not fused:
            raise ValueError(
                f"{type(self).__name__} runs the fused kernel only; {self.of.__name__} updates without it"
            )
        execution = {"capturable": capturable, "fused": True}
        self.param_groups = [{**defaults_of(self.of), **group, **execution} for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        # Each parameter's layout is fixed: the permutation that makes it contiguous, found once.
        self.orders = {p: memory_order(p) for group in self.param_groups for p in group["params"]}

    @torch.no_grad()
    def step(self) -> None:
        """Updates every parameter that has a gradient, as the step of the optimizer this one
        stands for (``of``; Adam's with fused=True) does."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state.get(p) or self._first_state(p) for p in params]
            torch._foreach_add_([state["step"] for state in states], 1)
            self._step_group(group, params, states)

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict]) -> None:
        """Updates a group's parameters, their step counts advanced: Adam's update."""
        self._update(group, params, states, lr=group["lr"], eps=group["eps"])

    def _update(
        self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict], lr: float, eps: float
    ) -> None:
        """Runs the fused kernel over ``params`` (their step counts already advanced), with ``lr``
        and ``eps`` in place of the group's."""
        beta1, beta2 = group["betas"]
        orders = [self.orders[p] for p in params]
        torch._fused_adam_(
            in_memory_order(params, orders),
            in_memory_order([p.grad for p in params], orders),
            in_memory_order([state["exp_avg"] for state in states], orders),
            in_memory_order([state["exp_avg_sq"] for state in states], orders),
            [],  # no amsgrad, which our settings do not offer
            [state["step"] for state in states],
            amsgrad=False,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=eps,
            maximize=False,
        )

    def _first_state(self, parameter: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[parameter] = {
            "step": torch.zeros((), dtype=torch.float32, device=parameter.device),
            "exp_avg": torch.zeros_like(parameter, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(parameter, memory_format=torch.preserve_format),
        }
        return state


class FusedRAdam(FusedAdam):
    """torch.optim.RAdam's update through Adam's fused kernel, on a CPU.

    torch.optim.RAdam updates a CPU's weights op by op, with five temporaries the size of each
    weight: 76 ms a step for a stack of ten 10x30 models, where the fused Adam kernel takes 4 ms
    (docs/performance.md). Once the variance is tractable (rho_t > 5), RAdam's step is Adam's with
    the step size times the rectification r_t and eps divided by sqrt(1 - beta2^t):

        lr r_t sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
          = lr r_t / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps / sqrt(1 - beta2^t)),

    which is what the kernel computes with those two numbers. Before that (the first five steps at
    beta2 = 0.999), the kernel updates the moments with a step size of zero, and the weights take
    RAdam's unadapted step, lr m / (1 - beta1^t). The same update in exact arithmetic; the
    roundings differ from torch.optim.RAdam's. Settings and state are torch.optim.RAdam's.
    """

    of = torch.optim.RAdam

    def __init__(
        self, groups: Sequence[dict[str, Any]], capturable: bool = False, fused: bool = True
    ) -> None:
        super().__init__(groups, capturable, fused)
        if any(group["decoupled_weight_decay"] for group in self.param_groups):
            raise ValueError(
                "FusedRAdam adds the weight decay to the gradient (RAdam's default), not to the weights"
            )

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict]) -> None:
        """Updates a group's parameters, their step counts advanced: RAdam's update, whose numbers
        depend on the step count (a stack's weights step together: one count)."""
        by_step: dict[float, list[int]] = {}
        for i, state in enumerate(states):
            by_step.setdefault(float(state["step"]), []).append(i)
        for step, indices in by_step.items():
            self._radam_update(group, [params[i] for i in indices], [states[i] for i in indices], step)

    def _radam_update(
        self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict], step: float
    ) -> None:
        beta1, beta2 = group["betas"]
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2**step / bias_correction2
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            self._update(
                group, params, states, lr=group["lr"] * rect, eps=group["eps"] / bias_correction2**0.5
            )
            return
        self._update(group, params, states, lr=0.0, eps=group["eps"])
        torch._foreach_add_(
            params, [state["exp_avg"] for state in states], alpha=-group["lr"] / bias_correction1
        )


def memory_order(tensor: torch.Tensor) -> tuple[int, ...] | None:
    """Gives the tensor's axes from the largest stride to the smallest: the permutation under which
    a dense tensor, such as a stack's weight kept in its gradient's order (``model.stack``), is a
    contiguous view of its memory; None where they are in that order already."""
    order = tuple(sorted(range(tensor.dim()), key=lambda axis: -tensor.stride(axis)))
    return None if order == tuple(range(tensor.dim())) else order


def in_memory_order(
    tensors: Sequence[torch.Tensor], orders: Sequence[tuple[int, ...] | None]
) -> list[torch.Tensor]:
    """Gives each tensor with its axes permuted by its parameter's ``memory_order``: the same elements
    in the same memory, contiguous. Adam's update is elementwise, so it is the same update; but the
    CPU kernel copies every tensor that is not contiguous into one that is and back (7 ms of a 45 ms
    step for a stack of 8 default models)."""
    return [
        tensor if order is None else tensor.permute(order)
        for tensor, order in zip(tensors, orders, strict=True)
    ]


@dataclass(frozen=True)
class OptimizerKind:
    """A registered optimizer: torch's class (its update, settings and state format), the devices
    where a fused kernel runs its update (one pass over all parameters instead of a loop of small
    ops; RAdam's is Adam's kernel), and the class that calls that kernel directly, where there is one."""

    cls: type[torch.optim.Optimizer]
    fused_devices: tuple[str, ...] = ()
    fused: type[FusedAdam] | None = None


OPTIMIZERS: dict[str, OptimizerKind] = {
    "adam": OptimizerKind(torch.optim.Adam, fused_devices=("cpu", "cuda"), fused=FusedAdam),
    # On CUDA, torch.optim.RAdam's capturable update goes into the step's CUDA graph.
    "radam": OptimizerKind(torch.optim.RAdam, fused_devices=("cpu",), fused=FusedRAdam),
}

# Options that say how an update runs on a device, not what it computes.
EXECUTION_OPTIONS = ("fused", "foreach", "capturable", "differentiable")
# Optimizer state shared by the members of a block: the step count (a stack's members step together).
SHARED_STATE = ("step",)


def hyperparameters(settings: OptimConfig) -> dict[str, Any]:
    """Gives the settings of one member's updates, as torch's optimizers name them."""
    return {
        "lr": settings.lr,
        "betas": tuple(settings.betas),
        "eps": settings.eps,
        "weight_decay": settings.weight_decay,
    }


def blocks_of(keys: Sequence[Any]) -> list[tuple[int, int]]:
    """Gives the runs [a, b) of consecutive equal ``keys``, in order."""
    starts = [m for m in range(len(keys)) if m == 0 or keys[m] != keys[m - 1]]
    return list(zip(starts, [*starts[1:], len(keys)], strict=True))


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
        options = [hyperparameters(member) for member in settings]
        keys = [tuple(member.items()) for member in options]
        # blocks[j] = (a, b): members a..b-1, consecutive and of one setting; views[j][i] is their
        # slice of stacked parameter i, a leaf view of its memory.
        self.blocks = blocks_of(keys)
        self.views = [[p.detach()[a:b] for p in self.stacked] for a, b in self.blocks]
        self.block_of = [j for j, (a, b) in enumerate(self.blocks) for _ in range(a, b)]
        groups: dict[tuple, dict[str, Any]] = {}
        for (a, _), views in zip(self.blocks, self.views, strict=True):
            groups.setdefault(keys[a], {"params": [], **options[a]})["params"].extend(views)
        self.group_of = [list(groups).index(key) for key in keys]
        self.execution = {"capturable": capturable}
        update: type[torch.optim.Optimizer] | type[FusedAdam] = kind.cls
        if device.type in kind.fused_devices:
            self.execution["fused"] = True
            update = kind.fused or kind.cls
        self.optimizer = update(list(groups.values()), **self.execution)

    def zero_grad(self) -> None:
        for parameter in self.stacked:
            parameter.grad = None

    def step(self) -> None:
        """Updates every member from the stacked gradients of the last backward pass."""
        for (a, b), views in zip(self.blocks, self.views, strict=True):
            for view, parameter in zip(views, self.stacked, strict=True):
                view.grad = parameter.grad[a:b]
        self.optimizer.step()

    def _member(self, m: int) -> tuple[list[torch.Tensor], int]:
        """Gives the views of member m's block and m's index in it."""
        j = self.block_of[m]
        return self.views[j], m - self.blocks[j][0]

    def member_options(self, m: int) -> dict[str, Any]:
        """Gives member m's settings and execution options, as its parameter group holds them."""
        group = self.optimizer.param_groups[self.group_of[m]]
        return {key: value for key, value in group.items() if key != "params"}

    @property
    def state(self) -> dict[torch.Tensor, dict[str, torch.Tensor]]:
        """The update's state (step counts and moments) by block view, each tensor a whole block's."""
        return self.optimizer.state

    def member_state(self, m: int, state: dict[torch.Tensor, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Gives member m's optimizer state as a single model's optimizer would save it: views of
        the block's ``state``, or of ``state``, a copy of it (copy the views before they change)."""
        views, k = self._member(m)
        state = self.state if state is None else state
        return {
            "state": {
                i: {key: value if key in SHARED_STATE else value[k] for key, value in state[view].items()}
                for i, view in enumerate(views)
                if view in state
            },
            "param_groups": [{**self.member_options(m), "params": list(range(len(views)))}],
        }

    def load_member_state(self, m: int, saved: dict[str, Any]) -> None:
        """Loads a single model's optimizer state (moments and step counts) into member m.

        The member keeps its own settings (learning rate, betas, ...) and this run's way of
        executing the update, so a checkpoint written on a CPU resumes under a CUDA graph. The
        members of a block share one step count: loading a member sets it for its block (a stack
        resumes only from checkpoints of one step).
        """
        views, k = self._member(m)
        options = self.member_options(m)
        # Saved state is keyed by the ids in the saved group's "params", in the order of our views.
        for view, i in zip(views, saved["param_groups"][0]["params"], strict=True):
            for key, value in saved["state"].get(i, {}).items():
                value = placed(key, value, view, options)
                block = self.optimizer.state.setdefault(view, {})
                if key in SHARED_STATE:
                    block[key] = value
                    continue
                if key not in block:  # the block's first loaded member: its moments start at zero
                    block[key] = torch.zeros_like(view, dtype=value.dtype)
                block[key][k].copy_(value)

    def reset_member(self, m: int) -> None:
        """Zeroes member m's moments in place: with zero weights and no gradient, it stays put."""
        views, k = self._member(m)
        for view in views:
            for key, value in self.optimizer.state.get(view, {}).items():
                if key not in SHARED_STATE:
                    value[k].zero_()


def placed(key: str, value: Any, parameter: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """Gives a loaded optimizer state value where torch's optimizers keep it.

    The step count is a float32 scalar, on the parameter's device where the update runs there
    (capturable or fused) and on the CPU otherwise; a moment takes the parameter's dtype and device.
    """
    if key in SHARED_STATE:
        on_device = options.get("capturable") or options.get("fused")
        return torch.as_tensor(value, dtype=torch.float32).to(parameter.device if on_device else "cpu")
    return value.to(dtype=parameter.dtype, device=parameter.device)
