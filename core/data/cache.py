"""Resized uint8 pixel cache: decode every image once, then train from a memory-mapped array.

Decoding full-size PNGs every epoch is the classic loader bottleneck (GPU idle, most time in
PIL). The cache is one `(N, S, S)` uint8 `.npy` opened with `mmap_mode='r'` (so 112k images
never sit in RAM) plus `manifest.json` listing each file with its size and mtime. When files
change only those rows are decoded again; unchanged rows are copied from the old cache.
Files are written under temporary names and committed by an atomic rename of the manifest,
so an interrupted build never leaves a cache that looks valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.data.base import ArrayTable, DataError, ProgressFn
from core.data.decode import DecodeError, load_resized

CACHE_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 256
IMAGES_NAME_RE = re.compile(r"^images-[0-9a-f]{12}\.npy$")
"""The only pixel-file names a manifest may name (what build_cache writes)."""
FREE_SPACE_MARGIN = 64 * 2**20
"""Bytes left free beyond the pixel file itself, so the manifest and the OS still fit."""
"""Images decoded per batch: bounds memory to CHUNK resized images however large the set."""


@dataclass
class CacheCheck:
    """Whether a cache matches the files on disk right now, and if not why."""

    valid: bool
    reason: str
    changed: int = 0


@dataclass
class CacheResult:
    """An opened cache: row i holds paths[i] (zeros where the file failed)."""

    directory: Path
    images_file: Path
    images: np.ndarray
    ok: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)
    decoded: int = 0
    reused: int = 0
    seconds: float = 0.0


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def cache_key(path: Path, root: Optional[Path]) -> str:
    """Manifest key: the path relative to the dataset root, so a moved dataset keeps its cache."""
    if root is not None:
        try:
            return Path(os.path.relpath(path, root)).as_posix() if _inside(path, root) else str(path)
        except ValueError:  # different drives on Windows
            return str(path)
    return str(path)


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        return True
    except ValueError:
        return False


def signature(path: Path) -> tuple[int, int]:
    """(size, mtime_ns); (-1, -1) for a file that cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (int(st.st_size), int(st.st_mtime_ns))


def _read_manifest(directory: Path) -> Optional[dict]:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, list) and len(f) == 4 and isinstance(f[0], str) and isinstance(f[3], str)
            and _is_int(f[1]) and _is_int(f[2]) for f in files):
        return None
    if not _is_int(data.get("img_size")) or not isinstance(data.get("images_file"), str):
        return None  # anyone may have edited it: a wrong type means "no cache", never a traceback
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def confined_member(directory: Path, name: object) -> Optional[Path]:
    """The cache file a manifest names, or None when the name could leave the cache folder.

    A manifest is data anyone could have edited: only a plain file name of ours (`images-*.npy`,
    no separators, no '..', no symlink pointing elsewhere) is accepted, so a cache never reads,
    overwrites or deletes a file outside its own folder.
    """
    if not isinstance(name, str) or not IMAGES_NAME_RE.match(name):
        return None
    candidate = Path(directory) / name
    try:
        real_dir = Path(os.path.realpath(directory))
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError):
        return None
    if real.parent != real_dir:
        return None
    return candidate


def _open_images(directory: Path, manifest: dict) -> Optional[np.ndarray]:
    file = confined_member(directory, manifest.get("images_file"))
    try:
        size = int(manifest.get("img_size", 0))
        n_files = len(manifest["files"])
    except (TypeError, ValueError, KeyError):
        return None
    if file is None:
        return None
    try:
        images = np.load(file, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if images.dtype != np.uint8 or images.shape != (n_files, size, size):
        return None
    return images


def check_cache(directory: Path, paths: Sequence[Path], size: int, root: Optional[Path] = None) -> CacheCheck:
    """Cheap validity test (one stat per file, no decoding)."""
    manifest = _read_manifest(Path(directory))
    if manifest is None:
        return CacheCheck(False, "missing")
    if int(manifest.get("img_size", -1)) != size:
        return CacheCheck(False, f"built at {manifest.get('img_size')}px, need {size}px")
    files = manifest.get("files", [])
    keys = [cache_key(Path(p), root) for p in paths]
    if [f[0] for f in files] != keys:
        return CacheCheck(False, "the image list changed")
    changed = sum(1 for p, f in zip(paths, files) if signature(Path(p)) != (f[1], f[2]))
    if changed:
        return CacheCheck(False, f"{changed} file(s) changed size or time", changed)
    if _open_images(Path(directory), manifest) is None:
        return CacheCheck(False, "pixel file missing or damaged")
    return CacheCheck(True, "valid")


def build_cache(paths: Sequence[Path], directory: Path, size: int, root: Optional[Path] = None,
                progress: Optional[ProgressFn] = None, workers: Optional[int] = None,
                description: str = "caching images") -> CacheResult:
    """Open the cache for `paths` at `size`, decoding only what is new or changed."""
    started = time.perf_counter()
    directory = Path(directory)
    progress = progress or (lambda done, total, desc: None)
    paths = [Path(p) for p in paths]
    keys = [cache_key(p, root) for p in paths]
    sigs = [signature(p) for p in paths]
    old = _read_manifest(directory)
    old_images = _open_images(directory, old) if old is not None and int(old.get("img_size", -1)) == size else None
    old_rows: dict[str, tuple[int, int, int, str]] = {}
    if old_images is not None:
        old_rows = {f[0]: (row, f[1], f[2], f[3]) for row, f in enumerate(old["files"])}

    reuse: dict[int, int] = {}
    status: list[str] = [""] * len(paths)
    for i, (key, sig) in enumerate(zip(keys, sigs)):
        prev = old_rows.get(key)
        if prev is not None and (prev[1], prev[2]) == sig:
            reuse[i] = prev[0]
            status[i] = prev[3]
    if old_images is not None and len(reuse) == len(paths) and [f[0] for f in old["files"]] == keys:
        return _result(directory, old, old_images, started, decoded=0, reused=len(paths))

    directory.mkdir(parents=True, exist_ok=True)
    images_name = f"images-{uuid.uuid4().hex[:12]}.npy"
    tmp_images = directory / (images_name + ".tmp")
    out = allocate_pixel_file(tmp_images, (len(paths), size, size))
    try:
        for i, row in reuse.items():
            if not status[i]:
                out[i] = old_images[row]
        todo = [i for i in range(len(paths)) if i not in reuse]
        total = len(todo)
        progress(0, total, description)
        done = 0
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            for start in range(0, total, CHUNK):
                chunk = todo[start:start + CHUNK]
                for i, (pixels, reason) in zip(chunk, pool.map(lambda j: _decode_one(paths[j], size), chunk)):
                    if pixels is None:
                        status[i] = reason
                    else:
                        out[i] = pixels
                done += len(chunk)
                progress(done, total, description)
        out.flush()
        del out
        os.replace(tmp_images, directory / images_name)
    except BaseException:
        _unlink(tmp_images)
        raise
    manifest = {
        "version": CACHE_VERSION,
        "img_size": size,
        "images_file": images_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": [[k, s[0], s[1], st] for k, s, st in zip(keys, sigs, status)],
    }
    _write_json_atomic(directory / MANIFEST, manifest)
    if old is not None and old.get("images_file") != images_name:
        stale = confined_member(directory, old.get("images_file"))
        if stale is not None:
            _unlink(stale)  # open maps elsewhere keep their inode
    images = np.load(directory / images_name, mmap_mode="r")
    return _result(directory, manifest, images, started, decoded=len(paths) - len(reuse), reused=len(reuse))


class CacheSpaceError(DataError):
    """Not enough free disk for the pixel cache; the message is one line saying how much is needed."""


def allocate_pixel_file(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Create a uint8 .npy of `shape` with every block allocated on disk, then memory-map it.

    A sparse memmap on a disk that fills up later kills the process with SIGBUS on first
    write; allocating first turns a full disk into one clear error before anything is decoded.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    nbytes = int(np.prod(shape))
    need = nbytes + FREE_SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise CacheSpaceError(f"pixel cache: {path.parent} has {free / 2**20:.0f} MiB free, the cache needs "
                              f"{need / 2**20:.0f} MiB (free space or set --cache_dir to another disk)")
    try:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            offset = fh.tell()
            fh.flush()
            if nbytes:
                os.posix_fallocate(fh.fileno(), offset, nbytes)
    except OSError as err:
        _unlink(path)
        raise CacheSpaceError(f"pixel cache: cannot allocate {nbytes / 2**20:.0f} MiB in {path.parent} "
                              f"({err.strerror or err}); free space or set --cache_dir") from None
    return np.lib.format.open_memmap(path, mode="r+")


def _decode_one(path: Path, size: int) -> tuple[Optional[np.ndarray], str]:
    try:
        return load_resized(path, size), ""
    except DecodeError as err:
        return None, err.reason


def _result(directory: Path, manifest: dict, images: np.ndarray, started: float, decoded: int,
            reused: int) -> CacheResult:
    status = [f[3] for f in manifest["files"]]
    ok = np.array([not s for s in status], dtype=bool)
    failures = {i: s for i, s in enumerate(status) if s}
    return CacheResult(directory=directory, images_file=directory / manifest["images_file"], images=images,
                       ok=ok, failures=failures, decoded=decoded, reused=reused,
                       seconds=time.perf_counter() - started)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def cache_root(data_dir: Optional[str], cache_dir: Optional[str]) -> tuple[Path, Optional[str]]:
    """Where caches live: --cache_dir, else <data_dir>/.medcls_cache, else a user cache folder.

    Returns (root, note); note explains a fallback (e.g. a read-only dataset mount).
    """
    if cache_dir:
        return Path(cache_dir).expanduser(), None
    if data_dir:
        preferred = Path(data_dir).expanduser() / ".medcls_cache"
        if _writable_dir(preferred):
            return preferred, None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medcls"
    digest = hashlib.sha1(os.path.abspath(data_dir or ".").encode()).hexdigest()[:12]
    fallback = base / digest
    note = (f"pixel cache: {data_dir} is not writable, using {fallback} (set --cache_dir to choose)"
            if data_dir else None)
    return fallback, note


def _writable_dir(path: Path) -> bool:
    """Writable, and not marked read-only: root passes os.access everywhere, so the mode bits of a
    dataset folder someone made read-only (a shared mount, test fixtures) are respected too."""
    existing = path if path.exists() else path.parent
    try:
        if not existing.is_dir() or not existing.stat().st_mode & 0o222 or not os.access(existing, os.W_OK | os.X_OK):
            return False
        path.mkdir(parents=False, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


class CachedTable(ArrayTable):
    """An ArrayTable over a cache file; image i is cache row rows[i] (all rows in order if None).

    Pickles as the file name, not the pixels, so DataLoader workers (spawn) stay cheap.
    """

    def __init__(self, images_file: Path, targets: np.ndarray, domains: np.ndarray, ids: list[str],
                 patients: Optional[list[str]] = None, rows: Optional[np.ndarray] = None,
                 images: Optional[np.ndarray] = None):
        self.images_file = Path(images_file)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        mapped = images if images is not None else np.load(self.images_file, mmap_mode="r")
        super().__init__(mapped, targets, domains, ids=ids, patients=patients)
        expected = len(self.rows) if self.rows is not None else len(mapped)
        if len(targets) != expected:
            raise ValueError(f"{len(targets)} targets for {expected} cached images")

    def image(self, index: int) -> np.ndarray:
        row = int(self.rows[index]) if self.rows is not None else index
        return np.array(self.images[row])  # a writable copy, detached from the map

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images = np.load(self.images_file, mmap_mode="r")
