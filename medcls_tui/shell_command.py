"""How the user's shell runs medcls, for commands printed to be run as printed (issue 28.5).

After the README's set-up, `medcls` is on PATH only inside `uv run`; a printed `medcls train ...`
then fails with "command not found". `uv run` sets UV (the uv binary) in the environment.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def medcls_command() -> str:
    """'uv run medcls' under uv, 'medcls' where the entry point is installed on PATH, else this
    Python with `-m medcls_tui`."""
    if os.environ.get("UV"):
        return "uv run medcls"
    found = shutil.which("medcls")
    if found and Path(found).resolve().parent == Path(sys.executable).resolve().parent:
        return "medcls"
    return f"{shlex.quote(sys.executable)} -m medcls_tui"


def command(*args: str) -> str:
    """A medcls command line with each argument quoted for a POSIX shell."""
    return " ".join([medcls_command(), *(shlex.quote(str(a)) for a in args)])
