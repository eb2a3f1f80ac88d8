"""Figures that explain the method, drawn with the project's own Gumbel code
(``scripts/make_figures.py`` writes them).

Figures are built as ``matplotlib.figure.Figure`` objects (rendered by the Agg canvas), never
through pyplot's global state, so they work headless.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from vae_gumbel.gumbel import gumbel_cdf, gumbel_max, gumbel_pdf, gumbel_softmax, sample_gumbel

DEMO_LOGITS = torch.tensor([1.2, 0.3, -0.5, 2.0, 0.8, -1.0, 0.1, 1.6, -0.2, 0.5])


def gumbel_distribution_figure(
    parameters: Sequence[tuple[float, float]] = ((0.0, 1.0), (0.0, 2.0), (2.0, 1.0), (-1.0, 0.5)),
    draws: int = 100_000,
    seed: int = 0,
) -> Figure:
    """Gives the Gumbel pdf and cdf for a few (mu, beta), and inverse-cdf samples over the pdf."""
    figure = Figure(figsize=(14, 4))
    pdf_axis, cdf_axis, sample_axis = figure.subplots(1, 3)
    x = torch.linspace(-5, 12, 600, dtype=torch.float64)
    for mu, beta in parameters:
        label = f"mu={mu:g}, beta={beta:g}"
        pdf_axis.plot(x, gumbel_pdf(x, mu, beta), label=label)
        cdf_axis.plot(x, gumbel_cdf(x, mu, beta), label=label)
    pdf_axis.set(title="Gumbel pdf", xlabel="x", ylabel="density")
    cdf_axis.set(title="Gumbel cdf", xlabel="x", ylabel="P(G <= x)")
    pdf_axis.legend()
    mu, beta = parameters[0]
    samples = sample_gumbel(
        (draws,), mu, beta, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    sample_axis.hist(
        samples.numpy(), bins=120, range=(-5, 12), density=True, alpha=0.6, label=f"{draws:,} samples"
    )
    sample_axis.plot(x, gumbel_pdf(x, mu, beta), color="black", label="pdf")
    sample_axis.set(title=f"Inverse-cdf samples, mu={mu:g}, beta={beta:g}", xlabel="x")
    sample_axis.legend()
    return figure


def gumbel_max_figure(logits: torch.Tensor = DEMO_LOGITS, draws: int = 100_000, seed: int = 0) -> Figure:
    """Gives histograms of softmax sampling and Gumbel-max sampling next to the exact probabilities."""
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.softmax(logits, -1)
    k = logits.numel()
    by_softmax = torch.multinomial(probabilities, draws, replacement=True, generator=generator)
    by_gumbel = gumbel_max(logits.expand(draws, k), generator=generator)
    figure = Figure(figsize=(12, 4))
    axes = figure.subplots(1, 2, sharey=True)
    for axis, indices, title in (
        (axes[0], by_softmax, "sampling from softmax(logits)"),
        (axes[1], by_gumbel, "Gumbel-max: argmax(logits + G)"),
    ):
        frequencies = torch.bincount(indices, minlength=k).double() / draws
        axis.bar(range(k), frequencies, color="tab:blue", alpha=0.7, label=f"{draws:,} draws")
        axis.scatter(range(k), probabilities, color="black", marker="_", s=400, label="exact probability")
        axis.set(title=title, xlabel="category", xticks=range(k))
        axis.legend()
    axes[0].set_ylabel("frequency")
    return figure


def softmax_temperature_figure(
    logits: torch.Tensor = DEMO_LOGITS, temperatures: Sequence[float] = (0.1, 1.0, 5.0, 50.0)
) -> Figure:
    """Gives softmax(logits / tau) for a few temperatures: one-hot when cold, uniform when hot."""
    figure = Figure(figsize=(4 * len(temperatures), 3.5))
    axes = figure.subplots(1, len(temperatures), sharey=True)
    for axis, tau in zip(axes, temperatures, strict=True):
        axis.bar(range(logits.numel()), torch.softmax(logits / tau, -1), color="tab:orange")
        axis.set(title=f"softmax(logits / {tau:g})", xlabel="category", ylim=(0, 1))
    axes[0].set_ylabel("probability")
    return figure


def gumbel_softmax_figure(
    logits: torch.Tensor = DEMO_LOGITS,
    temperatures: Sequence[float] = (0.1, 0.5, 1.0, 5.0),
    samples: int = 3,
    expectation_draws: int = 50_000,
    seed: int = 0,
) -> Figure:
    """Gives, per temperature, the expectation of the Gumbel-Softmax sample and a few single samples.

    The expectation tends to softmax(logits) as tau -> 0 and to uniform as tau grows; single
    samples are nearly one-hot when cold and smooth when hot.
    """
    generator = torch.Generator().manual_seed(seed)
    k = logits.numel()
    figure = Figure(figsize=(3.2 * len(temperatures), 1.8 * (samples + 1)))
    axes = figure.subplots(samples + 1, len(temperatures), sharey=True, squeeze=False)
    for col, tau in enumerate(temperatures):
        many = gumbel_softmax(logits.expand(expectation_draws, k), tau, generator=generator)
        axes[0][col].bar(range(k), many.mean(0), color="tab:green")
        axes[0][col].set_title(f"tau = {tau:g}: expectation")
        for row in range(1, samples + 1):
            axes[row][col].bar(range(k), gumbel_softmax(logits, tau, generator=generator), color="tab:purple")
            axes[row][col].set_title(f"sample {row}", fontsize=9)
        for row in range(samples + 1):
            axes[row][col].set(ylim=(0, 1), xticks=[])
    figure.tight_layout()
    return figure
