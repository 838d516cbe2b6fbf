"""Hardware: the host and GPU facts (device choice, memory, utilisation), the VRAM advisor and its
table, and the measured batch-size probe.

May import: core.config, core.models (to build the model the probe measures) and core.training's
small leaf modules (precision, oom); never the Trainer.
"""
