"""Tooling beside the library, which the library never imports: the side-by-side benchmark and its
tutorial baseline, the matmul-peak probe, the figures that teach the method, and the study of the
estimators' gradients against exact ones."""
