"""The resized pixel cache: built once, reused when valid, partially rebuilt when files change."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.cache import CachedTable, build_cache, cache_root, check_cache
from core.data.decode import load_resized

from conftest import FIXTURES


def make_images(folder: Path, n: int, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size + 8), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_build_then_reuse_without_decoding(tmp_path):
    paths = make_images(tmp_path / "data", 5)
    calls = []
    first = build_cache(paths, tmp_path / "cache", 32, root=tmp_path / "data",
                        progress=lambda d, t, desc: calls.append((d, t)))
    assert first.decoded == 5 and first.reused == 0 and first.ok.all()
    assert first.images.shape == (5, 32, 32) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap)
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(first.images[i], load_resized(p, 32))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert check_cache(tmp_path / "cache", paths, 32, root=tmp_path / "data").valid
    second = build_cache(paths, tmp_path / "cache", 32, root=tmp_path / "data")
    assert second.decoded == 0 and second.reused == 5
    leftovers = [f.name for f in (tmp_path / "cache").iterdir() if f.name.endswith(".tmp")]
    assert leftovers == [] and len(list((tmp_path / "cache").glob("images-*.npy"))) == 1


def test_changed_file_is_detected_and_only_it_is_decoded(tmp_path):
    paths = make_images(tmp_path / "data", 4)
    build_cache(paths, tmp_path / "cache", 32, root=tmp_path / "data")
    Image.fromarray(np.full((20, 20), 200, dtype=np.uint8)).save(paths[2])  # new size and content
    check = check_cache(tmp_path / "cache", paths, 32, root=tmp_path / "data")
    assert not check.valid and check.changed == 1
    again = build_cache(paths, tmp_path / "cache", 32, root=tmp_path / "data")
    assert again.decoded == 1 and again.reused == 3
    assert (again.images[2] == 200).all()
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1  # the old pixel file is gone


def test_same_size_touched_file_is_detected(tmp_path):
    paths = make_images(tmp_path / "data", 2)
    build_cache(paths, tmp_path / "cache", 32)
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert check_cache(tmp_path / "cache", paths, 32).changed == 1


def test_new_resolution_or_list_invalidates(tmp_path):
    paths = make_images(tmp_path / "data", 3)
    build_cache(paths, tmp_path / "cache", 32)
    assert "32px" in check_cache(tmp_path / "cache", paths, 40).reason
    assert not check_cache(tmp_path / "cache", paths[:2], 32).valid
    subset = build_cache(paths[:2], tmp_path / "cache", 32)
    assert subset.decoded == 0 and subset.reused == 2 and subset.images.shape[0] == 2


def test_failures_are_recorded_and_not_retried_while_unchanged(tmp_path):
    paths = make_images(tmp_path / "data", 2)
    bad = tmp_path / "data" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = build_cache(paths + [bad], tmp_path / "cache", 32)
    assert result.ok.tolist() == [True, True, False]
    assert "corrupt" in result.failures[2] or "not an image" in result.failures[2]
    assert (result.images[2] == 0).all()
    again = build_cache(paths + [bad], tmp_path / "cache", 32)
    assert again.decoded == 0 and again.failures == result.failures
    Image.fromarray(np.full((10, 10), 9, dtype=np.uint8)).save(bad)  # fixed by the user
    fixed = build_cache(paths + [bad], tmp_path / "cache", 32)
    assert fixed.decoded == 1 and fixed.ok.all() and (fixed.images[2] == 9).all()


def test_damaged_manifest_means_rebuild(tmp_path):
    paths = make_images(tmp_path / "data", 2)
    build_cache(paths, tmp_path / "cache", 32)
    (tmp_path / "cache" / "manifest.json").write_text("{not json")
    assert check_cache(tmp_path / "cache", paths, 32).reason == "missing"
    assert build_cache(paths, tmp_path / "cache", 32).decoded == 2


def test_cached_table_pickles_without_pixels(tmp_path):
    paths = make_images(tmp_path / "data", 6)
    result = build_cache(paths, tmp_path / "cache", 64)
    table = CachedTable(result.images_file, np.arange(6), np.zeros(6), [p.name for p in paths])
    blob = pickle.dumps(table.subset([1, 3]))
    assert len(blob) < 6 * 64 * 64 // 2  # the file name travels, not the 24 kB of pixels
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.image(1), result.images[3])
    img = table.image(0)
    assert img.flags.writeable and not isinstance(img, np.memmap)


@pytest.mark.real_data
def test_cache_root_falls_back_when_data_dir_is_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(str(tmp_path), None) == (tmp_path / ".medcls_cache", None)
    assert cache_root(str(tmp_path), str(tmp_path / "c"))[0] == tmp_path / "c"
    ro = FIXTURES / "nih_chestxray14"
    if ro.stat().st_mode & 0o222:
        pytest.skip("fixtures are not marked read-only here")
    root, note = cache_root(str(ro), None)
    assert root.is_relative_to(tmp_path / "xdg" / "medcls") and "not writable" in note


def test_cached_table_maps_its_images_to_cache_rows(tmp_path):
    paths = make_images(tmp_path / "data", 4)
    result = build_cache(paths, tmp_path / "cache", 32)
    table = CachedTable(result.images_file, np.array([7, 8, 9]), np.zeros(3), ["c", "a", "c2"], rows=[2, 0, 2])
    np.testing.assert_array_equal(table.image(0), result.images[2])
    np.testing.assert_array_equal(table.image(1), result.images[0])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(table)).image(2), result.images[2])
    with pytest.raises(ValueError, match="2 targets for 4 cached images"):
        CachedTable(result.images_file, np.array([0, 1]), np.zeros(2), ["x", "y"])
