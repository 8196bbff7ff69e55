"""The command runners behind `ldmseg <command>` (predict, inpaint, reconstruct, visualize, demo, app) and the
non-learned baseline: each turns files into files with the library (data, models, diffusion, metrics,
pipeline). The library never imports from here."""
