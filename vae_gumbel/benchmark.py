"""``python -m vae_gumbel.benchmark``: the side-by-side benchmark, kept in ``vae_gumbel.tools.benchmark``."""

import sys

from vae_gumbel.tools.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
