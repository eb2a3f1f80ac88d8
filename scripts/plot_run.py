"""Plot a run's training curves from its metrics.jsonl: python scripts/plot_run.py RUN_DIR [--out PNG].

Relaxed and unrelaxed train loss and test loss per epoch, with the temperature on a second
axis. Writes RUN_DIR/curves.png (each run its own) unless --out says otherwise; a different
file already there is kept, and the new one gets the next free name (curves_2.png) unless
--overwrite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vae_gumbel import commands
from vae_gumbel.errors import ConfigError, one_line_errors
from vae_gumbel.files import check_writable, write_new
from vae_gumbel.jobs import read_job
from vae_gumbel.report import curves_figure, save_figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (with metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="the PNG (default: RUN_DIR/curves.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different file at the name")
    args = parser.parse_args(argv)
    out = args.out or args.run_dir / "curves.png"
    with one_line_errors():
        job = read_job(args.run_dir, args.run_dir)
        if not job.records:
            raise ConfigError(f"{args.run_dir} has no metrics.jsonl (or an empty one); give a run folder")
        if out.suffix.lower() != ".png":
            raise ConfigError(f"--out must be the path of a file ending in .png, got {out}")
        check_writable(out.parent, "--out")
        figure = curves_figure([job], title=str(args.run_dir))
        _, happened = write_new(out, lambda path: save_figure(figure, path), overwrite=args.overwrite)
    print(happened)
    return 0


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
