"""After training: metrics with confidence intervals, thresholds, scoring a split, predict, export, explain.

Everything here works on probabilities (sigmoid for multi-label, softmax for single-label) so the
numbers a clinician reads, the thresholds and the exported model all speak the same unit.
"""
