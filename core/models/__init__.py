"""Models: building a timm model for a run (heads, linear-probe wrapper, layer-wise LR decay groups),
model names and families, pretrained weights from the Hugging Face hub cache, and the linear-probe
feature cache.

May import: core.config (names and tips only) and core.training.precision; never the training loop,
core.runs or the UI.
"""
