"""Print the bias and variance of every gradient estimator on a problem small enough to enumerate.

    python scripts/estimator_gradients.py [--samples 40000] [--rao-samples M]

f(z) = (w . z - c)^2 over N = 2 categorical variables with K = 3 categories (9 codes), so the
exact gradient of E_q[f(z)] is known. Prints a Markdown table, one row per estimator and tau. Each
estimator has its packaged settings (conf/estimator/NAME.yaml: gumbel_rao averages 10 conditional
draws, reinmax_rao 100), or the --rao-samples given.
"""

from __future__ import annotations

import argparse

import torch

from vae_gumbel import commands
from vae_gumbel.config import compose_settings
from vae_gumbel.estimators import ESTIMATORS, build_estimator
from vae_gumbel.tools.gradient_study import gradient_stats, quadratic_objective


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40_000, help="gradient draws per estimator")
    parser.add_argument(
        "--rao-samples",
        type=int,
        default=None,
        help="conditional draws of the Rao-Blackwellised estimators (default: each one's packaged setting)",
    )
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="temperatures compared"
    )
    args = parser.parse_args(argv)
    logits = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    f = quadratic_objective(2, 3, seed=1)
    print("| estimator | tau | bias (L2) | variance | cosine to exact |")
    print("|---|---|---|---|---|")
    overrides = [] if args.rao_samples is None else [f"estimator.rao_samples={args.rao_samples}"]
    settings = {name: compose_settings([f"estimator={name}", *overrides]).estimator for name in ESTIMATORS}
    for tau in args.temperatures:
        for name in sorted(ESTIMATORS):
            estimator = build_estimator(settings[name])
            stats = gradient_stats(estimator, logits, f, tau, args.samples, seed=2)
            print(f"| {name} | {tau:g} | {stats.bias:.3f} | {stats.variance:.3f} | {stats.cosine:.4f} |")
    print(f"\nexact gradient norm {stats.exact_norm:.3f}; {args.samples} single-sample estimates each")


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
