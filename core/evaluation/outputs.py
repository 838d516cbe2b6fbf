"""Where the after-training commands may write, and how: checked before any slow work, written atomically.

`predict`, `export` and `explain` write files a user names. A folder, a device (/dev/full), a path
under a file, a read-only folder or one of the run's own files (its checkpoints, config.yaml,
records) must be one clear line before the model loads, and a failed write (a full disk) must
leave neither a half-written file nor the `.tmp` it was written to.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

from core.runs import folder as runs
from core.evaluation.run_model import RunModelError

# the run's own records: an output never replaces them (checkpoints/ is refused as a whole)
RUN_FILES = (runs.CONFIG_FILE, runs.METRICS_FILE, runs.SUMMARY_FILE, "thresholds.json", "run.lock")


class OutputError(RunModelError):
    """An output path that cannot or must not be written; one line naming it."""


def shown(path: str | Path) -> str:
    """A path as printable UTF-8 text: undecodable bytes of a file name become \\xNN, never an encode error."""
    try:
        return os.fsencode(str(path)).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that no file name decoded to
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def protected(path: Path, run_dir: Optional[Path]) -> bool:
    """True for a run's checkpoints (anything under checkpoints/) and its records (config.yaml, ...)."""
    if run_dir is None:
        return False
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(run_dir))
    if root / runs.CHECKPOINT_DIR in (real, *real.parents):
        return True
    return real.parent == root and (real.name in RUN_FILES or real.name.startswith("eval_"))


def probe_folder(folder: Path, what: str) -> None:
    """Create and delete a file in `folder`: the only test that holds for root and read-only mounts."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medcls-probe-"):
            pass
    except OSError as err:
        raise OutputError(f"{what}: cannot write in folder {shown(folder)} ({err.strerror or err})") from None


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(".")


def check_folder(folder: Path, what: str) -> Path:
    """A folder that is (or can be created as) a writable folder; created and probed here."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what}: {shown(folder)} is not a folder")
    base = folder if folder.exists() else _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(f"{what}: {shown(folder)} is under {shown(base)}, which is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{what}: cannot create folder {shown(folder)} ({err.strerror or err})") from None
    probe_folder(folder, what)
    return folder


def check_file(path: Path, what: str, run_dir: Optional[Path] = None, suffixes: Sequence[str] = (),
               overwrite: bool = True) -> Path:
    """An output file path that may be written: refused when it is a folder, a device, under a file, one of
    the run's own files, of the wrong kind (suffix), or (overwrite=False) already there."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what}: {shown(path)} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(f"{what}: {shown(path)} is not a regular file (a device or pipe); give a file name")
    if protected(path, run_dir):
        raise OutputError(f"{what}: {shown(path)} is one of the run's own files (checkpoints, config, records); "
                          "choose another name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{what}: {shown(path)} must end in {' or '.join(suffixes)}")
    if path.is_file() and not overwrite:
        raise OutputError(f"{what}: {shown(path)} already exists; pass --overwrite to replace it, or choose "
                          "another --out")
    base = path.parent if path.parent.exists() else _existing_ancestor(path.parent)
    if not base.is_dir():
        raise OutputError(f"{what}: {shown(path)} is under {shown(base)}, which is a file, not a folder")
    check_folder(path.parent, what)
    return path


def distinct(paths: Sequence[Path], what: str) -> None:
    """Two outputs of one command must never be the same file (the metadata written over the model)."""
    seen: dict[str, Path] = {}
    for p in paths:
        key = os.path.realpath(p)
        if key in seen:
            raise OutputError(f"{what}: {shown(seen[key])} and {shown(p)} would be the same file")
        seen[key] = p


def same_file(path: Path, others: Sequence[Path]) -> bool:
    """Is `path` one of `others` (symlinks resolved)? An output must never replace an input."""
    key = os.path.realpath(path)
    return any(os.path.realpath(o) == key for o in others)


@contextlib.contextmanager
def atomic_path(path: Path, what: str) -> Iterator[Path]:
    """Yield a temp path beside `path` (same suffix, for writers that infer the format from it); renamed
    onto `path` when the block succeeds, removed when it fails.

    An OSError (full disk, folder gone) becomes one OutputError line naming the file."""
    path, tmp = Path(path), None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"{what}: cannot write {shown(path)} ({err.strerror or err})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_bytes(path: Path, data: bytes, what: str) -> None:
    with atomic_path(path, what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
