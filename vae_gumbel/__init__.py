"""Categorical VAEs with the Gumbel-Softmax relaxation on MNIST."""
