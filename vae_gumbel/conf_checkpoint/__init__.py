"""The primary configs of the commands that read a checkpoint, ``sample`` and ``evaluate``.

They take no config groups, so they live apart from ``train``'s and its groups (``vae_gumbel/conf/``),
which Hydra would otherwise offer them, in tab completion for one.
"""
