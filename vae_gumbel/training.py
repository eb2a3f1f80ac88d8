"""The training step, the epoch loop and the test-set evaluation.

Losses accumulate on the training device and are read back once per log interval, so a
step never waits for the device. The temperature enters the step as a tensor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from vae_gumbel.data import ImageSet
from vae_gumbel.errors import ConfigError, NonFiniteLossError, first_line
from vae_gumbel.estimators import Estimator
from vae_gumbel.gumbel import gumbel_max
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.objectives import code_perplexity, kl_per_variable, negative_elbo, relaxed_and_unrelaxed
from vae_gumbel.schedules import Schedule

# Devices with a fused Adam kernel: one pass over all parameters instead of a loop of small ops.
FUSED_ADAM_DEVICES = ("cpu", "cuda")

# A latent variable whose mean KL to the prior is below this carries (almost) no information.
ACTIVE_KL_NATS = 0.01

# Ordinary steps per batch shape before a CudaGraphStep captures its graph.
GRAPH_WARMUP_STEPS = 3

# The order of the per-step values the step function returns and the loop sums up.
STEP_VALUES = ("loss_relaxed", "loss_unrelaxed", "recon", "kl")


def resolve_device(name: str) -> torch.device:
    """Gives the device for ``trainer.device``: auto picks CUDA when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={name} but no CUDA device is available; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def allow_tf32(device: torch.device, enabled: bool) -> None:
    """Lets float32 matmuls on CUDA use TF32 tensor cores (float32 accumulation, 10-bit
    mantissa inputs): several times the throughput, well within the noise of a stochastic loss."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def temperature_value(schedule: Schedule, step: int) -> float:
    """Gives the temperature at ``step`` as a Python float (a learned one is read back)."""
    tau = schedule(step)
    return float(tau.detach()) if isinstance(tau, torch.Tensor) else float(tau)


@dataclass(frozen=True)
class StepPlan:
    """How the training step runs: its torch.compile mode (None: eager), and whether the whole
    step (forward, backward and optimizer update) is captured and replayed as one CUDA graph."""

    compile: str | None
    cuda_graph: bool = False


def plan_step(setting: str, device: torch.device, learned_temperature: bool = False) -> StepPlan:
    """Gives the plan for ``trainer.compile``. ``auto`` (the default) compiles on CUDA only: on a
    CPU compiling gains ~1.1x at batch 100, which a short run spends again on compiling. On CUDA,
    ``auto`` and ``true`` compile the step and replay it whole as one CUDA graph, since a model this
    small is bound by launching its kernels, not by running them; a learned temperature, whose
    gradient leaves the step, gets inductor's own CUDA graphs (reduce-overhead) instead."""
    if setting == "false" or (setting == "auto" and device.type != "cuda"):
        return StepPlan(None)
    if setting in ("auto", "true"):
        if device.type != "cuda":
            return StepPlan("default")
        if learned_temperature:
            return StepPlan("reduce-overhead")
        return StepPlan("default", cuda_graph=True)
    return StepPlan(setting)


class TrainStep:
    """One optimisation step: relaxed loss backward, optimizer step; gives the STEP_VALUES as a (4,) tensor.

    The forward pass and losses run under ``torch.compile`` when ``compile`` names a mode, and
    under bf16 autocast with ``precision="bf16"`` (the losses are computed in float32).
    """

    def __init__(
        self,
        model: CategoricalVAE,
        optimizer: torch.optim.Optimizer,
        estimator: Estimator,
        prior_tau: float | None = None,
        *,
        compile: str | None = None,  # noqa: A002
        backend: str = "inductor",
        precision: str = "32",
    ) -> None:
        self.model, self.optimizer, self.estimator, self.prior_tau = model, optimizer, estimator, prior_tau
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        # Static shapes: a last partial batch compiles once more, where dynamic shapes would
        # trace torch.rand with a symbolic size (unsupported) and CUDA graphs want fixed sizes.
        self.losses = (
            torch.compile(self._losses, mode=compile, backend=backend, dynamic=False)
            if compile
            else self._losses
        )

    def _losses(self, x: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(
            x.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            losses = relaxed_and_unrelaxed(self.model, x, tau, self.estimator, prior_tau=self.prior_tau)
        values = torch.stack([losses.loss_relaxed.detach(), losses.loss_unrelaxed, losses.recon, losses.kl])
        return losses.loss_relaxed, values.float()

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        loss, values = self.losses(x, tau)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
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
        if not step.optimizer.defaults.get("capturable", False):
            raise ValueError("a CUDA graph of the step needs an optimizer created with capturable=True")
        self.step, self.warmup = step, warmup
        self.calls: dict[torch.Size, int] = {}
        self.graphs: dict[torch.Size, Captured] = {}

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        captured = self.graphs.get(x.shape)
        if captured is None:
            calls = self.calls[x.shape] = self.calls.get(x.shape, 0) + 1
            if calls <= self.warmup:
                return self._on_side_stream(x, tau)
            captured = self.graphs[x.shape] = self._capture(x, tau)
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
    optimizer: torch.optim.Optimizer,
    estimator: Estimator,
    plan: StepPlan,
    *,
    prior_tau: float | None = None,
    backend: str = "inductor",
    precision: str = "32",
) -> TrainStep | CudaGraphStep:
    """Gives the step function that ``plan`` describes."""
    step = TrainStep(
        model, optimizer, estimator, prior_tau, compile=plan.compile, backend=backend, precision=precision
    )
    return CudaGraphStep(step) if plan.cuda_graph else step


@dataclass
class EpochResult:
    means: dict[str, float]  # per-example means of STEP_VALUES over the epoch, keyed "train/..."
    step: int  # global step after the epoch
    temperature: float  # the temperature of the epoch's last step
    seconds: float
    images: int


class StepSums:
    """Sums the steps' values on the device without waiting for it.

    A step costs one kernel: its values times its batch size, written into a row of a buffer.
    A flush, once per ``capacity`` steps or read-back, adds the rows up and notes the first
    step with a non-finite value, so the hot loop launches nothing else.
    """

    def __init__(self, device: torch.device, capacity: int, first_step: int) -> None:
        self.rows = torch.empty(capacity, len(STEP_VALUES), device=device)
        self.count = 0
        self.row0_step = first_step  # the global step of the buffer's first row
        self.sums = torch.zeros(len(STEP_VALUES), device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, values: torch.Tensor, batch: int) -> None:
        if self.count == len(self.rows):
            self._flush()
        torch.mul(values, batch, out=self.rows[self.count])
        self.count += 1

    def _flush(self) -> None:
        if self.count == 0:
            return
        rows = self.rows[: self.count]
        self.sums += rows.sum(dim=0)
        bad = ~torch.isfinite(rows).all(dim=1)
        first_here = torch.where(bad.any(), self.row0_step + bad.int().argmax(), -1)
        self.first_bad_step = torch.where(self.first_bad_step < 0, first_here, self.first_bad_step)
        self.row0_step += self.count
        self.count = 0

    def read(self) -> tuple[list[float], int | None]:
        """Gives the sums so far and the first non-finite step (None if none), in one read-back."""
        self._flush()
        *sums, bad = torch.cat([self.sums.double(), self.first_bad_step.double().view(1)]).tolist()
        return sums, (int(bad) if bad >= 0 else None)


def train_epoch(
    step_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[torch.Tensor],
    schedule: Schedule,
    *,
    start_step: int,
    num_batches: int,
    log_every: int,
    on_log: Callable[[dict[str, float], int], None] | None = None,
    description: str = "",
    progress: bool = True,
) -> EpochResult:
    """Runs one epoch of ``step_fn`` and gives its mean losses.

    Raises NonFiniteLossError naming the first step whose loss was NaN or infinite; it is
    found on the device and reported at the next log point.
    """
    sums: StepSums | None = None
    tau_buffer, tau_value = None, None
    step, images, logged_sums, logged_images = start_step, 0, [0.0] * len(STEP_VALUES), 0
    started = time.perf_counter()
    bar = tqdm(total=num_batches, desc=description, disable=not progress, leave=False, dynamic_ncols=True)

    def read_back() -> list[float]:
        totals, first_bad_step = sums.read()
        if first_bad_step is not None:
            raise NonFiniteLossError(
                f"the loss became non-finite at step {first_bad_step + 1}; training stopped and "
                "the last good checkpoint was kept. Lower optim.lr, or raise temperature.min"
            )
        return totals

    for x in batches:
        if schedule.learned:
            tau = schedule(step)
        else:
            value = schedule(step)
            if tau_buffer is None:
                tau_buffer = torch.empty((), device=x.device)
            if value != tau_value:  # a kernel only when the temperature changes
                tau_buffer.fill_(value)
                tau_value = value
            tau = tau_buffer
        values = step_fn(x, tau)
        if sums is None:
            sums = StepSums(values.device, max(1, min(log_every, num_batches, 1024)), start_step)
        batch = x.shape[0]
        sums.add(values, batch)
        step += 1
        images += batch
        bar.update(1)
        if step % log_every == 0:
            current = read_back()
            interval = {
                f"step/{name}": (now - before) / (images - logged_images)
                for name, now, before in zip(STEP_VALUES, current, logged_sums, strict=True)
            }
            interval["step/temperature"] = temperature_value(schedule, step - 1)
            logged_sums, logged_images = current, images
            bar.set_postfix(
                loss=f"{interval['step/loss_relaxed']:.2f}", tau=f"{interval['step/temperature']:.3f}"
            )
            if on_log is not None:
                on_log(interval, step)
    bar.close()
    if sums is None:
        raise ConfigError("the training set is empty; check data.train_limit")
    totals = read_back()
    seconds = time.perf_counter() - started
    return EpochResult(
        means={f"train/{name}": total / images for name, total in zip(STEP_VALUES, totals, strict=True)},
        step=step,
        temperature=temperature_value(schedule, step - 1),
        seconds=seconds,
        images=images,
    )


@dataclass
class Evaluation:
    metrics: dict[str, float]  # test/loss, test/recon, test/kl, test/perplexity, test/active_variables
    usage: torch.Tensor  # (N, K) how often each category was sampled on the test set
    kl_per_variable: torch.Tensor  # (N,) mean KL of each latent variable to the prior


@torch.inference_mode()
def evaluate(model: CategoricalVAE, images: ImageSet, batch_size: int, seed: int) -> Evaluation:
    """Gives the test negative ELBO with exact one-hot posterior samples (no relaxation).

    The noise comes from a generator seeded with ``seed``, so every evaluation of the same
    model draws the same samples and test losses compare across epochs.
    """
    device = images.pixels.device
    generator = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(3, device=device, dtype=torch.float64)
    usage = torch.zeros(model.latent_dim, model.categorical_dim, device=device)
    kl_per_var = torch.zeros(model.latent_dim, device=device, dtype=torch.float64)
    for start in range(0, len(images), batch_size):
        x = images.targets(slice(start, start + batch_size))
        logits = model.encode(x)
        codes = gumbel_max(logits, one_hot=True, generator=generator)
        elbo = negative_elbo(model.decode(codes), x, logits)
        sums += torch.stack([elbo.loss.sum(), elbo.recon.sum(), elbo.kl.sum()]).double()
        usage += codes.sum(dim=0)
        kl_per_var += kl_per_variable(logits).sum(dim=0).double()
    n = len(images)
    loss, recon, kl = (sums / n).tolist()
    kl_means = kl_per_var / n
    return Evaluation(
        metrics={
            "test/loss": loss,
            "test/recon": recon,
            "test/kl": kl,
            "test/perplexity": float(code_perplexity(usage).mean()),
            "test/active_variables": int((kl_means > ACTIVE_KL_NATS).sum()),
        },
        usage=(usage / n).cpu(),
        kl_per_variable=kl_means.float().cpu(),
    )
