"""Point 1 and 7 of issue 11: the pixel cache never touches a file outside its folder and never
memory-maps a file the disk could not hold."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.data import cache as cache_mod
from core.data.cache import CacheSpaceError, build_cache, check_cache


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _poison_manifest(cache_dir, images_file):
    manifest_path = cache_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["images_file"] = images_file
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_manifest_naming_a_file_outside_the_cache_never_deletes_it(tmp_path, how):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    paths = _images(data, 3)
    build_cache(paths, cache_dir, 32, root=data)
    victim = tmp_path / "precious.npy"
    np.save(victim, np.zeros((3, 32, 32), dtype=np.uint8))  # a valid-looking pixel file, so it would be "used"
    before = victim.read_bytes()
    if how == "absolute":
        _poison_manifest(cache_dir, str(victim))
    elif how == "dotdot":
        _poison_manifest(cache_dir, "../precious.npy")
    else:
        link = cache_dir / "images-0123456789ab.npy"
        link.symlink_to(victim)
        _poison_manifest(cache_dir, link.name)
    assert not check_cache(cache_dir, paths, 32, root=data).valid  # never trusted
    Image.fromarray(np.full((40, 40), 7, dtype=np.uint8)).save(paths[0])  # force a rebuild
    result = build_cache(paths, cache_dir, 32, root=data)
    assert victim.read_bytes() == before
    assert result.images_file.parent == cache_dir and result.decoded == 3  # nothing reused from the outside file
    assert (result.images[0] == 7).all()


def test_manifest_with_wrong_types_is_rebuilt_not_a_crash(tmp_path):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    paths = _images(data, 2)
    build_cache(paths, cache_dir, 32, root=data)
    (cache_dir / "manifest.json").write_text(json.dumps({"version": 1, "img_size": "x", "files": 5,
                                                          "images_file": ["a"]}))
    assert not check_cache(cache_dir, paths, 32, root=data).valid
    assert build_cache(paths, cache_dir, 32, root=data).decoded == 2


def test_cache_build_refuses_when_disk_too_small(tmp_path, monkeypatch):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    paths = _images(data, 2)
    real = shutil.disk_usage
    monkeypatch.setattr(cache_mod.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1024))
    with pytest.raises(CacheSpaceError, match=r"pixel cache: .* MiB free, the cache needs"):
        build_cache(paths, cache_dir, 32, root=data)
    assert [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_full_tmpfs_gives_one_error_never_sigbus(small_tmpfs, tmp_path, monkeypatch):
    """A real full disk: the free-space check is bypassed so posix_fallocate itself must refuse."""
    data = tmp_path / "data"
    paths = _images(data, 40)
    monkeypatch.setattr(cache_mod, "FREE_SPACE_MARGIN", 0)
    with pytest.raises(CacheSpaceError, match="pixel cache"):
        build_cache(paths, small_tmpfs, 256, root=data)  # 40*256*256 = 2.5 MiB > 2 MiB
    assert list(small_tmpfs.iterdir()) == []
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 0, 10**12))
    with pytest.raises(CacheSpaceError, match="cannot allocate"):
        build_cache(paths, small_tmpfs, 256, root=data)
    assert list(small_tmpfs.iterdir()) == []
