"""Diffusion: the training objective, samplers (Algorithms 2 and 3) and post-processing."""
