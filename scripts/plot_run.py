"""Plot a run's training curves from its metrics.jsonl: python scripts/plot_run.py RUN_DIR [--out PNG].

Relaxed and unrelaxed train loss and test loss per epoch, with the temperature on a second
axis. Writes outputs/figures/<run folder name>_curves.png unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vae_gumbel.figures import FIGURE_DIR, run_curves_figure, save_figure
from vae_gumbel.tracking import read_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    records = read_metrics(args.run_dir / "metrics.jsonl")
    if not records:
        print(
            f"error: {args.run_dir / 'metrics.jsonl'} is missing or empty; give a run folder", file=sys.stderr
        )
        return 1
    name = args.run_dir.resolve().name
    out = args.out or FIGURE_DIR / f"{name}_curves.png"
    print(save_figure(run_curves_figure(records, title=str(args.run_dir)), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
