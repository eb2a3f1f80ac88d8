"""``python -m vae_gumbel.benchmark``: the side-by-side benchmark, kept in ``vae_gumbel.tools.benchmark``."""

from vae_gumbel.tools.benchmark import command

if __name__ == "__main__":
    command()
