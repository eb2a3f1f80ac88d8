"""Categorical variational autoencoders with the Gumbel-Softmax (Concrete) relaxation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vae-gumbel")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
