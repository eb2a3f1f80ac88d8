"""``python -m vae_gumbel``: lists the package's commands, each ``python -m vae_gumbel.COMMAND``."""

from vae_gumbel import commands

commands.package()
