"""The training loop as tutorials write it, kept as the benchmark's baseline.

torchvision's ``MNIST`` with ``ToTensor`` through a ``DataLoader`` (a PIL image decoded per
example), a second full forward pass for the unrelaxed loss, and ``.item()`` after every
step. It trains the project's model with the project's loss, so the benchmark can check
that both loops compute the same numbers before it compares their speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler
from torchvision import datasets, transforms

from vae_gumbel.gumbel import Temperature, gumbel_softmax
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.objectives import negative_elbo


class FixedOrder(Sampler[int]):
    """Yields a given sequence of indices: lets the baseline see the batches the trainer sees."""

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def tutorial_loader(
    root: str, batch_size: int, order: list[int] | None = None, device: torch.device | None = None
) -> DataLoader:
    """Gives the tutorials' loader: MNIST with ToTensor, shuffled (or in ``order``)."""
    dataset = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    cuda = device is not None and device.type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=order is None,
        sampler=FixedOrder(order) if order is not None else None,
        num_workers=1 if cuda else 0,
        pin_memory=cuda,
        # Its own generator: each DataLoader iterator draws a seed, which would otherwise shift
        # the global random stream that the Gumbel noise comes from.
        generator=torch.Generator().manual_seed(0),
    )


@dataclass
class BaselineStep:
    loss_relaxed: float
    loss_unrelaxed: float


def tutorial_step(
    model: CategoricalVAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    tau: Temperature,
    replay_noise: bool = False,
) -> BaselineStep:
    """One tutorial step: relaxed forward and backward, then a second forward pass with a hard
    sample for the unrelaxed loss, both read back with .item().

    With ``replay_noise`` the second pass reuses the first pass's Gumbel noise (so its hard
    sample is the trainer's); tutorials draw new noise.
    """
    generator = None
    if replay_noise:
        generator = torch.Generator(device=x.device)
        generator.set_state(
            torch.cuda.get_rng_state(x.device) if x.device.type == "cuda" else torch.get_rng_state()
        )
    logits = model.encode(x)
    z = gumbel_softmax(logits, tau)
    loss = negative_elbo(model.decode(z), x, logits).loss.mean()
    optimizer.zero_grad()
    loss.backward()
    with torch.no_grad():
        logits_again = model.encode(x)
        hard = gumbel_softmax(logits_again, tau, hard=True, generator=generator)
        loss_unrelaxed = negative_elbo(model.decode(hard), x, logits_again).loss.mean()
    optimizer.step()
    return BaselineStep(loss_relaxed=loss.item(), loss_unrelaxed=loss_unrelaxed.item())


def tutorial_run(
    model: CategoricalVAE,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    tau: Temperature,
    steps: int,
    device: torch.device,
    replay_noise: bool = False,
) -> tuple[list[BaselineStep], float, int]:
    """Runs ``steps`` tutorial steps; gives their losses, the seconds taken and the images seen."""
    results, images = [], 0
    started = time.perf_counter()
    while len(results) < steps:
        for x, _ in loader:
            x = x.to(device, non_blocking=True).view(-1, 784)
            results.append(tutorial_step(model, optimizer, x, tau, replay_noise))
            images += len(x)
            if len(results) == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return results, time.perf_counter() - started, images


def tutorial_test_loss(model: CategoricalVAE, root: str, device: torch.device) -> float:
    """Gives the test loss as tutorials compute it after an epoch: the test images through a
    DataLoader, a hard Gumbel-Softmax sample at tau = 1, summed and averaged in Python."""
    dataset = datasets.MNIST(root, train=False, download=False, transform=transforms.ToTensor())
    total = 0.0
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=100):
            x = x.to(device).view(-1, 784)
            logits = model.encode(x)
            total += (
                negative_elbo(model.decode(gumbel_softmax(logits, 1.0, hard=True)), x, logits)
                .loss.sum()
                .item()
            )
    return total / len(dataset)


def main(argv: list[str] | None = None) -> int:
    """Trains the tutorial set-up (30 x 10, grey levels, tau = 1, Adam 1e-3, batch 100) as tutorials
    do, printing the test loss after each epoch: the whole process that scripts/time_to_result.py
    times against the trainer's."""
    import argparse

    from vae_gumbel.commands import usage_name

    parser = argparse.ArgumentParser(
        prog=usage_name("vae_gumbel.tools.baseline"),
        description="Train the tutorial set-up with the tutorial loop.",
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs to train")
    parser.add_argument("--data-root", default="data", help="the folder holding MNIST/raw (default: data)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = CategoricalVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = tutorial_loader(args.data_root, 100, device=device)
    for epoch in range(1, args.epochs + 1):
        _, seconds, _ = tutorial_run(model, optimizer, loader, 1.0, len(loader), device)
        test_loss = tutorial_test_loss(model, args.data_root, device)
        print(f"epoch {epoch}: {seconds:.1f}s, test loss {test_loss:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
