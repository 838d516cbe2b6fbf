"""Widgets of the medcls app, grouped by screen area."""
