"""Open the app from the command line (`medcls` with no command): the one arrow from the CLI to the app.

Kept apart so the CLI modules never import the app (tests/test_architecture.py checks it); the app
never imports the CLI.
"""
from __future__ import annotations


def open_app(output_dir: str, preset: str, mouse: bool = True) -> str:
    """Run the app until it quits; returns its farewell line (where the runs are)."""
    from .app import MedclsApp

    medcls_app = MedclsApp(output_dir=output_dir, initial_preset=preset)
    medcls_app.run(mouse=mouse)
    return medcls_app.farewell()
