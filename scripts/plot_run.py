"""Plot a run's training curves from its metrics.jsonl: python scripts/plot_run.py RUN_DIR [--out PNG].

Relaxed and unrelaxed train loss and test loss per epoch, with the temperature on a second
axis. Writes outputs/figures/<run folder name>_curves.png unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vae_gumbel.report import curves_figure, read_job, save_figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    job = read_job(args.run_dir, args.run_dir)
    if not job.records:
        print(
            f"error: {args.run_dir} has no metrics.jsonl (or an empty one); give a run folder",
            file=sys.stderr,
        )
        return 1
    out = args.out or Path("outputs") / "figures" / f"{args.run_dir.resolve().name}_curves.png"
    print(save_figure(curves_figure([job], title=str(args.run_dir)), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
