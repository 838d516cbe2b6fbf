"""Screens of the medcls app: one per file."""
