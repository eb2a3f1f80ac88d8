"""``python -m vae_gumbel.benchmark``: the side-by-side benchmark, kept in ``vae_gumbel.tools.benchmark``."""

if __name__ == "__main__":
    from vae_gumbel import commands

    commands.benchmark()
