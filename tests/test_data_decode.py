"""Decoding every kind of file users have: bit depths, alpha, wrong extensions, DICOM, broken files."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.base import DataError
from core.data.decode import DecodeError, decode_gray, dicom_to_uint8, load_resized, scale_to_uint8, window

from conftest import FIXTURES
from official_layouts import write_dicom
DICOM_DIR = FIXTURES / "dicom"
MONO2 = DICOM_DIR / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
MONO1 = DICOM_DIR / "Fake_MONOHR1.dcm"


def gradient(h: int = 40, w: int = 60) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)


def test_8bit_png_round_trips_exactly(tmp_path):
    arr = gradient()
    Image.fromarray(arr, mode="L").save(tmp_path / "a.png")
    out = decode_gray(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 60) and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


def test_16bit_png_with_12_bits_is_stretched_to_full_range(tmp_path):
    arr = np.linspace(0, 4095, 50 * 50).reshape(50, 50).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = decode_gray(tmp_path / "deep.png")
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_allclose(out.astype(float), arr / 4095 * 255, atol=1)


def test_16bit_values_within_8bit_range_are_kept():
    arr = np.array([[0, 10], [200, 255]], dtype=np.uint16)
    np.testing.assert_array_equal(scale_to_uint8(arr), arr.astype(np.uint8))


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    gray = gradient()
    rgba = np.stack([gray, gray, gray, np.zeros_like(gray)], axis=-1)  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "rgba.png"), gray)


def test_gray_with_alpha_and_palette_images(tmp_path):
    gray = gradient()
    la = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(np.full_like(gray, 7))])
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "la.png"), gray)
    Image.fromarray(gray).convert("P").save(tmp_path / "pal.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "pal.png"), gray)


def test_wrong_extension_is_read_by_content(tmp_path):
    arr = gradient()
    Image.fromarray(arr).save(tmp_path / "really_png.jpg", format="PNG")
    np.testing.assert_array_equal(decode_gray(tmp_path / "really_png.jpg"), arr)
    Image.fromarray(arr).save(tmp_path / "really_jpeg.png", format="JPEG", quality=98)
    out = decode_gray(tmp_path / "really_jpeg.png")
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).mean() < 4


def test_jpeg_size_hint_decodes_smaller_but_resize_is_exact_size(tmp_path):
    big = np.tile(gradient(64, 64), (16, 16))  # 1024 x 1024
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=90)
    assert decode_gray(tmp_path / "big.jpg", size_hint=200).shape[0] < 1024
    assert load_resized(tmp_path / "big.jpg", 200).shape == (200, 200)


@pytest.mark.parametrize("kind, reason", [
    ("missing", "missing file"),
    ("empty", "empty file"),
    ("text", "not an image"),
    ("truncated", "truncated or corrupt"),
])
def test_broken_files_raise_decode_error_with_reason(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is a csv, not an image\n1,2,3\n")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DecodeError) as info:
        decode_gray(path)
    assert reason in info.value.reason
    assert info.value.path == str(path)


@pytest.mark.real_data
def test_dicom_monochrome1_is_the_inverse_of_monochrome2():
    pytest.importorskip("pydicom")
    mono2 = decode_gray(MONO2)
    mono1 = decode_gray(MONO1)
    assert mono2.shape == (1024, 1024) and mono2.dtype == np.uint8
    assert mono2.std() > 20  # a real radiograph, not a flat image
    np.testing.assert_array_equal(mono1.astype(int), 255 - mono2.astype(int))


@pytest.mark.real_data
def test_dicom_with_wrong_extension_is_detected_by_magic(tmp_path):
    pytest.importorskip("pydicom")
    shutil.copy(MONO2, tmp_path / "scan.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "scan.png"), decode_gray(MONO2))


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> None:
    pytest.importorskip("pydicom")
    write_dicom(path, pixels, photometric, **tags)


def test_dicom_window_is_applied(tmp_path):
    pixels = np.array([[0, 1000, 1500], [2000, 2500, 4095]], dtype=np.uint16)
    _write_dicom(tmp_path / "win.dcm", pixels, WindowCenter=2000, WindowWidth=1001)
    out = decode_gray(tmp_path / "win.dcm")
    # Linear window 1500..2500: below -> 0, above -> 255, centre -> mid grey.
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[0, 2] == 0
    assert out[1, 2] == 255 and out[1, 1] == 255
    assert abs(int(out[1, 0]) - 128) <= 1


def test_dicom_16bit_without_window_uses_its_range_and_monochrome1_inverts(tmp_path):
    pixels = np.array([[100, 600], [1100, 1100]], dtype=np.uint16)
    _write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-100)
    out = decode_gray(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(out, np.array([[255, 127], [0, 0]], dtype=np.uint8))  # 255 - round(127.5)


def test_window_functions():
    values = np.array([0.0, 50.0, 100.0])
    assert window(values, 50.5, 101).tolist() == [0, 128, 255]  # DICOM: (x - (c - 0.5)) / (w - 1) + 0.5
    sig = window(values, 50, 100, "SIGMOID")
    expected = np.rint(255 / (1 + np.exp(-4 * (values - 50) / 100)))  # DICOM PS3.3 C.11.2.1.3.1
    assert sig.tolist() == expected.tolist() == [30, 128, 225]


def test_dicom_pipeline_without_tags_keeps_8bit_values():
    class Meta(dict):
        PhotometricInterpretation = "MONOCHROME2"
        BitsStored = 8

    arr = gradient(4, 4)
    np.testing.assert_array_equal(dicom_to_uint8(Meta(), arr), arr)


def test_missing_pydicom_names_the_extra(tmp_path, monkeypatch):
    _write_dicom(tmp_path / "scan.dcm", gradient(8, 8).astype(np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(DataError) as info:
        decode_gray(tmp_path / "scan.dcm")
    assert "uv sync --extra dicom" in str(info.value) and "medcls[dicom]" in str(info.value)
