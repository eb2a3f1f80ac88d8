"""Draw the figures that explain Gumbel-Softmax into outputs/figures/.

python scripts/make_figures.py                 # all of them
python scripts/make_figures.py gumbel_max      # one: gumbel_distribution, gumbel_max,
                                               # softmax_temperature, gumbel_softmax
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vae_gumbel import commands
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import check_writable, write_new
from vae_gumbel.report import save_figure
from vae_gumbel.tools import teaching_figures

FIGURES = {
    "gumbel_distribution": teaching_figures.gumbel_distribution_figure,
    "gumbel_max": teaching_figures.gumbel_max_figure,
    "softmax_temperature": teaching_figures.softmax_temperature_figure,
    "gumbel_softmax": teaching_figures.gumbel_softmax_figure,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *FIGURES], metavar="NAME", help=", ".join(FIGURES))
    parser.add_argument(
        "--out", type=Path, default=Path("outputs") / "figures", help="folder (default: outputs/figures)"
    )
    args = parser.parse_args(argv)
    with one_line_errors():
        check_writable(args.out, "--out")
    for name in args.names or FIGURES:
        figure = FIGURES[name]()
        print(write_new(args.out / f"{name}.png", lambda path, figure=figure: save_figure(figure, path))[1])


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
