"""Training: the Trainer (core/training/trainer.py) and the parts it is made of — run components
(setup), run recorder, checkpoint state, optimizer step, validation — plus losses, LR schedule, data
loaders, validation metrics, precision, distributed helpers, early stopping and divergence, the
over/underfit watcher (fit_monitor) and TensorBoard logging.

The top of the dependence order: may import every other core package, none of which imports it
(except the leaf modules precision and oom, which import nothing of core).
"""
