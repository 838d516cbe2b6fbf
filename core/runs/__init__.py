"""Run folders: naming and listing runs, the run lock, checkpoints (weights_only state) and resume.

Everything that reads or writes a run folder's bookkeeping lives here, so a tool that only lists runs
never imports torch's training side. May import: core.config and core.events; never core.training
or core.hardware.
"""
