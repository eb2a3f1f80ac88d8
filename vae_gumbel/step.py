"""The training step of a stack of models, compiled or not, and its capture as one CUDA graph.

The temperature enters the step as a tensor, so annealing never recompiles it, and the step
never waits for the device: it gives its values back as a tensor that stays there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from vae_gumbel.checkpoint import capture_rng_state, restore_rng_state
from vae_gumbel.errors import ConfigError, describe, first_line
from vae_gumbel.mixed_precision import Bf16Twin
from vae_gumbel.model import CategoricalVAE, stack_size
from vae_gumbel.objectives import Elbo
from vae_gumbel.optim import StackOptimizer
from vae_gumbel.timeline import TIMELINE

log = logging.getLogger("vae_gumbel.train")

# trainer.compile: auto | false | graph (the eager step as one CUDA graph) | true | an inductor mode.
COMPILE_SETTINGS = ("auto", "false", "graph", "true", "default", "reduce-overhead", "max-autotune")
# trainer.precision: float32, bf16 autocast, or auto (bf16 on a CPU with native bf16 instructions).
PRECISIONS = ("auto", "32", "bf16")

# From how many steps a run repays compiling its step (trainer.compile=auto), on each device, by the
# size of its stack: (fewest members, steps) rows, the largest stacks first. On a 2-core AVX2 CPU, a
# cold compile took 25-37 s and saved 1.7 ms a step of one model (docs/performance.md). A stack
# saves more a step for about the same compile: on a 2-core AMD EPYC a cold compile took 16-18 s
# whatever the stack, and saved 24 ms a step of 32 members and 64 ms of 64 in bf16 (11.7 and 22.5
# ms in float32), repaid after 170-1,400 steps; stacks of 2 to 16 saved 2.5-4.1 ms, repaid after
# 4,000-6,400. On CUDA, the eager step replayed as one CUDA graph is already launch-free;
# compiling fuses its kernels (0.14 s an epoch at batch 100 on an H100) at the cost of the compile
# itself: an estimate from those figures, not yet measured against the graphed eager step.
COMPILE_PAYS_AFTER_STEPS: dict[str, tuple[tuple[int, int], ...]] = {
    "cpu": ((32, 2_000), (1, 20_000)),
    "cuda": ((1, 100_000),),
}

# Ordinary steps per batch shape before a CudaGraphStep captures its graph.
GRAPH_WARMUP_STEPS = 3

# The order of the per-step values the step function returns and the loop sums up.
STEP_VALUES = ("loss_relaxed", "loss_unrelaxed", "recon", "kl")


@dataclass(frozen=True)
class StepPlan:
    """How the training step runs: its torch.compile mode (None: eager), whether the whole step
    (forward, backward and optimizer update) is captured and replayed as one CUDA graph, and
    whether a step that cannot be compiled (no C++ compiler on a laptop, say) runs eager instead of
    failing the run: what ``auto`` promises, where a compile asked for by name fails."""

    compile: str | None
    cuda_graph: bool = False
    eager_if_compiling_fails: bool = False

    def describe(self, precision: str) -> str:
        """Says how the step runs in ``precision`` (as resolved), for a run's first line: what the
        ``auto`` settings chose on this machine, where a reader comparing two machines looks."""
        parts = [f"compiled ({self.compile})" if self.compile else "eager"]
        if self.cuda_graph:
            parts.append("one CUDA graph")
        return ", ".join([*parts, "bf16 autocast" if precision == "bf16" else "float32"])


def compile_pays(device: torch.device, steps: int | None, members: int = 1) -> bool:
    """Says whether ``steps`` steps of a stack of ``members`` repay compiling the step on ``device``
    (never when the run's length is unknown)."""
    if steps is None:
        return False
    rows = COMPILE_PAYS_AFTER_STEPS.get(device.type, COMPILE_PAYS_AFTER_STEPS["cpu"])
    return steps >= next(after for fewest, after in rows if members >= fewest)


def plan_step(
    setting: str,
    device: torch.device,
    learned_temperature: bool = False,
    steps: int | None = None,
    members: int = 1,
) -> StepPlan:
    """Gives the plan for ``trainer.compile`` on ``device`` for a run of ``steps`` steps of a stack of
    ``members``.

    ``auto`` (the default) takes the cheapest path for the run's length: it compiles only when the
    run is long enough to repay compiling (COMPILE_PAYS_AFTER_STEPS, sooner for a large stack), and
    trains on eager if compiling fails, and on CUDA it replays the whole step (forward, backward,
    optimizer update) as one CUDA graph either way, since a model this small is bound by launching
    its kernels, not by running them. ``graph`` is that graph without compiling; ``true`` compiles
    (on CUDA, with the graph). A learned temperature, whose gradient leaves the step, gets
    inductor's own CUDA graphs (reduce-overhead) instead.
    """
    cuda = device.type == "cuda"
    if setting == "false" or (setting == "graph" and not cuda):
        return StepPlan(None)
    if setting == "graph":
        return StepPlan(None, cuda_graph=True)
    if setting == "auto":
        pays = compile_pays(device, steps, members)
        if cuda and learned_temperature:
            return StepPlan("reduce-overhead" if pays else None, eager_if_compiling_fails=pays)
        return StepPlan("default" if pays else None, cuda_graph=cuda, eager_if_compiling_fails=pays)
    if setting == "true":
        if not cuda:
            return StepPlan("default")
        if learned_temperature:
            return StepPlan("reduce-overhead")
        return StepPlan("default", cuda_graph=True)
    return StepPlan(setting)


class TrainStep:
    """One optimisation step of every member of a stack: the members' relaxed losses backward, then
    the optimizer; gives each member's STEP_VALUES, (M, 4).

    x: (M, batch, D) images, tau: (M,) temperatures. Members whose ``active`` flag is off (a
    failed run) add nothing to the loss, so they get no gradient. The forward pass and losses run
    under ``torch.compile`` when ``compile`` names a mode, and under bf16 autocast with
    ``precision="bf16"`` (the losses are computed in float32), where a bf16 twin of the model holds
    the weights the matmuls read (``Bf16Twin``).
    """

    def __init__(
        self,
        model: CategoricalVAE,
        optimizer: StackOptimizer,
        objective: Elbo,
        *,
        compile: str | None = None,  # noqa: A002
        backend: str = "inductor",
        precision: str = "32",
        eager_if_compiling_fails: bool = False,
    ) -> None:
        self.model, self.optimizer, self.objective = model, optimizer, objective
        self.eager_if_compiling_fails = eager_if_compiling_fails
        self.active = torch.ones(stack_size(model), dtype=torch.bool, device=next(model.parameters()).device)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.twin = Bf16Twin(model) if precision == "bf16" else None
        self.computes = model if self.twin is None else self.twin.model
        # Static shapes: a last partial batch compiles once more, where dynamic shapes would
        # trace torch.rand with a symbolic size (unsupported) and CUDA graphs want fixed sizes.
        self.losses = (
            torch.compile(self._losses, mode=compile, backend=backend, dynamic=False)
            if compile
            else self._losses
        )
        self.compile_mode = compile
        self.compiled_shapes: set[torch.Size] = set()
        self.setup_seconds = 0.0  # spent compiling so far

    def _losses(self, x: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(
            x.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            losses = self.objective(self.computes, x, tau.view(-1, 1, 1, 1))
        values = torch.stack(
            [losses.loss_relaxed.detach(), losses.loss_unrelaxed, losses.recon, losses.kl], dim=-1
        )
        return torch.where(self.active, losses.loss_relaxed, 0.0).sum(), values.float()

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if self.compile_mode and x.shape not in self.compiled_shapes:
            self.compiled_shapes.add(x.shape)
            log.info(
                "compiling the training step for batches of %s (torch.compile, mode %s)",
                tuple(x.shape),
                self.compile_mode,
            )
            started = time.perf_counter()
            rng, done = capture_rng_state(), "compiled in %.1f s"
            try:
                values = self._step(x, tau)
            except Exception as err:
                reason = err
                while (inner := reason.__cause__ or getattr(reason, "inner_exception", None)) is not None:
                    reason = inner  # torch wraps the compiler's error: say that one
                if not self.eager_if_compiling_fails:
                    raise ConfigError(
                        f"could not compile the training step ({describe(reason)}); "
                        "trainer.compile=false or auto trains without compiling"
                    ) from err
                log.warning(
                    "could not compile the training step (%s); training on without compiling "
                    "(trainer.compile=false skips the attempt)",
                    describe(reason),
                )
                self.losses, self.compile_mode = self._losses, None
                restore_rng_state(rng)  # the eager step draws the noise the run would have
                values, done = self._step(x, tau), "gave up compiling after %.1f s"
            self._count_setup(started, "compile: the first step of each batch shape", done)
            return values
        return self._step(x, tau)

    def _count_setup(self, started: float, phase: str, message: str) -> None:
        seconds = time.perf_counter() - started
        self.setup_seconds += seconds
        TIMELINE.add(phase, seconds)
        log.info(message, seconds)

    def _step(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        if self.twin is not None:
            self.twin.refresh()
        loss, values = self.losses(x, tau)
        self.optimizer.zero_grad()
        loss.backward()
        if self.twin is not None:
            self.twin.hand_back_gradients()
        self.optimizer.step()
        return values


# A captured step: the graph, its input batch and temperature, and its output values.
Captured = tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]


class CudaGraphStep:
    """Replays a whole TrainStep (forward, backward, optimizer update) as one CUDA graph.

    Launched kernel by kernel, a small model's step costs the host more time than the GPU needs
    to run it; a replay is one launch. Per batch shape, the first ``warmup`` calls are ordinary
    steps on a side stream (as capture requires: compilation, cuBLAS handles and the optimizer
    state happen there), the next one captures the step, and every call from then on copies the
    batch and temperature into the graph's inputs and replays it. The optimizer must be created
    with ``capturable=True``. Random draws inside the graph advance the global CUDA generator as
    eager ones do, so runs stay reproducible from their seed.
    """

    def __init__(self, step: TrainStep, warmup: int = GRAPH_WARMUP_STEPS) -> None:
        if not step.optimizer.execution.get("capturable", False):
            raise ValueError("a CUDA graph of the step needs an optimizer created with capturable=True")
        self.step, self.warmup = step, warmup
        self.calls: dict[torch.Size, int] = {}
        self.graphs: dict[torch.Size, Captured] = {}
        self.capture_seconds = 0.0  # spent capturing graphs so far

    @property
    def setup_seconds(self) -> float:
        """Spent compiling and capturing so far."""
        return self.step.setup_seconds + self.capture_seconds

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        captured = self.graphs.get(x.shape)
        if captured is None:
            calls = self.calls[x.shape] = self.calls.get(x.shape, 0) + 1
            if calls <= self.warmup:
                return self._on_side_stream(x, tau)  # real training steps (the first one compiles)
            log.info("capturing the training step for batches of %s as one CUDA graph", tuple(x.shape))
            started = time.perf_counter()
            captured = self.graphs[x.shape] = self._capture(x, tau)
            seconds = time.perf_counter() - started
            self.capture_seconds += seconds
            TIMELINE.add("CUDA graph: capture", seconds)
            log.info("captured in %.2f s", seconds)
        graph, graph_x, graph_tau, values = captured
        graph_x.copy_(x)
        graph_tau.copy_(tau)
        graph.replay()
        return values

    def _on_side_stream(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            values = self.step(x, tau)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return values

    def _capture(self, x: torch.Tensor, tau: torch.Tensor) -> Captured:
        graph_x, graph_tau = x.clone(), tau.detach().clone()
        graph = torch.cuda.CUDAGraph()
        forget_cublas_workspaces()
        try:
            with torch.cuda.graph(graph):
                values = self.step(graph_x, graph_tau)
        except RuntimeError as err:
            raise ConfigError(
                f"the training step could not be captured as a CUDA graph ({first_line(err)}); "
                "use trainer.compile=reduce-overhead or trainer.compile=false"
            ) from err
        finally:
            forget_cublas_workspaces()
        return graph, graph_x, graph_tau, values


def forget_cublas_workspaces() -> None:
    """Makes cuBLAS drop the workspaces it keeps per stream, before and after a capture.

    cuBLAS allocates a stream's workspace on first use and keeps it. Allocated during a capture, it
    lies in the graph's private memory pool, which is freed with the graph while cuBLAS would go on
    using it: the next graph captured on that stream then fails with an illegal memory access.
    Cleared around the capture, the graph gets a workspace of its own in its pool, which nothing
    else uses; inductor's CUDA graphs do the same.
    """
    torch._C._cuda_clearCublasWorkspaces()


def build_step(
    model: CategoricalVAE,
    optimizer: StackOptimizer,
    objective: Elbo,
    plan: StepPlan,
    *,
    backend: str = "inductor",
    precision: str = "32",
) -> TrainStep | CudaGraphStep:
    """Gives the step function that ``plan`` describes."""
    step = TrainStep(
        model,
        optimizer,
        objective,
        compile=plan.compile,
        backend=backend,
        precision=precision,
        eager_if_compiling_fails=plan.eager_if_compiling_fails,
    )
    return CudaGraphStep(step) if plan.cuda_graph else step
