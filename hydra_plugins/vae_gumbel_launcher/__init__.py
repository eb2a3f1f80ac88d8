"""vae-gumbel's Hydra launcher: ``hydra/launcher=stacked``."""
