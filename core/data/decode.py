"""Turn any image file users actually have into a uint8 HxW gray array, or say exactly why not.

Chest X-ray collections mix 8- and 16-bit PNGs, RGBA exports, JPEGs named .png, DICOMs with
MONOCHROME1 and windowing, and the odd empty or truncated download. The format is read from
the file's bytes, not its extension. A file that cannot be used raises `DecodeError` (the
caller records it as skipped and carries on); only a missing optional dependency (pydicom)
raises `DataError`, because it would fail every DICOM the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data.base import DataError

PathLike = Union[str, Path]
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
ALL_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES
PYDICOM_HINT = "uv sync --extra dicom (or pip install 'medcls[dicom]')"
_EXIF_ORIENTATION = 0x0112


class DecodeError(Exception):
    """One file could not be turned into pixels; `reason` is short and user-facing."""

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def require_pydicom(why: str = "reading DICOM files"):
    """Import pydicom or fail once, clearly, naming the extra to install."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        raise DataError(f"{why} needs pydicom, an optional extra: {PYDICOM_HINT}") from None
    return pydicom


def is_dicom_bytes(head: bytes) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def decode_gray(path: PathLike, size_hint: Optional[int] = None) -> np.ndarray:
    """Full-resolution uint8 HxW. size_hint lets JPEG decode at a reduced scale (>= hint)."""
    return np.array(_decode_image(Path(path), size_hint), dtype=np.uint8)  # writable, unlike asarray


def load_resized(path: PathLike, size: int) -> np.ndarray:
    """Decode and squash-resize to size x size uint8 (full field of view kept, as folder.py does)."""
    return resize_square(_decode_image(Path(path), size), size)


def resize_square(image: Union[Image.Image, np.ndarray], size: int) -> np.ndarray:
    """Antialiased bilinear resize to size x size; a no-op when already that size."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    return np.array(image, dtype=np.uint8)  # writable (torch.from_numpy warns on read-only arrays)


def _decode_image(path: Path, size_hint: Optional[int]) -> Image.Image:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError(path, "missing file") from None
    except OSError as err:
        raise DecodeError(path, f"cannot read file ({err.strerror or err})") from None
    if not path.is_file():
        raise DecodeError(path, "not a regular file")
    if st.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as err:
        raise DecodeError(path, f"cannot read file ({err.strerror or err})") from None
    if is_dicom_bytes(head):
        return Image.fromarray(decode_dicom(path), mode="L")
    try:
        return _decode_pil(path, size_hint)
    except UnidentifiedImageError:
        if path.suffix.lower() in DICOM_SUFFIXES:  # DICOM written without the preamble
            return Image.fromarray(decode_dicom(path, force=True), mode="L")
        raise DecodeError(path, "not an image (unrecognised format)") from None
    except DecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise DecodeError(path, f"image too large ({err})") from None
    except Exception as err:  # truncated/corrupt streams raise OSError, SyntaxError, ValueError...
        raise DecodeError(path, f"truncated or corrupt image ({err})") from None


def _decode_pil(path: Path, size_hint: Optional[int]) -> Image.Image:
    with Image.open(path) as im:
        if im.format == "JPEG":
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            if size_hint and orientation == 1:
                im.draft("L", (size_hint, size_hint))  # DCT-domain downscale: much faster decode
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
        else:
            im.load()  # also reads only the first frame of multi-frame files
        return _to_gray8(im)


def _to_gray8(im: Image.Image) -> Image.Image:
    """Mode L from any PIL mode: alpha dropped, high bit depths scaled into 0..255."""
    mode = im.mode
    if mode == "L":
        return im
    if mode == "LA":
        return im.getchannel("L")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(scale_to_uint8(np.asarray(im)), mode="L")
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    if mode in ("RGBA", "RGBa", "PA", "P"):
        im = im.convert("RGB")  # the alpha channel is ignored, not composited
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    return im.convert("L")


def scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map a high-bit-depth gray array into uint8.

    Values already inside 0..255 are kept as they are (8-bit data in a 16-bit container).
    Otherwise the image's own min..max range is stretched to 0..255, because X-ray PNGs often
    store 10-14 bits in a 16-bit container and dividing by 257 would leave them nearly black.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[..., 0]
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(a).astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def decode_dicom(path: PathLike, force: bool = False) -> np.ndarray:
    """DICOM -> uint8: modality LUT, then VOI LUT or window (or min..max), MONOCHROME1 inverted."""
    pydicom = require_pydicom(f"{path}: reading DICOM")
    try:
        ds = pydicom.dcmread(str(path), force=force)
        pixels = ds.pixel_array
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DecodeError(path, f"unreadable DICOM ({reason})") from None
    try:
        return dicom_to_uint8(ds, pixels)
    except DecodeError:
        raise
    except Exception as err:
        raise DecodeError(path, f"unusable DICOM pixel data ({err})") from None


def dicom_to_uint8(ds, pixels: np.ndarray) -> np.ndarray:
    """Display pipeline of a gray radiograph (DICOM PS3.3 C.11), separated for tests."""
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    arr = np.asarray(pixels)
    if frames > 1 and arr.ndim >= 3:
        arr = arr[0]
    if arr.ndim == 3:  # colour (RGB/YBR) radiographs: the decoder already returned RGB
        return np.asarray(Image.fromarray(arr.astype(np.uint8)).convert("L"))
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    bits = int(getattr(ds, "BitsStored", 8 * arr.dtype.itemsize) or 8)
    values = _modality_lut(ds, arr)
    out = _voi(ds, values, bits)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _modality_lut(ds, arr: np.ndarray) -> np.ndarray:
    if "ModalityLUTSequence" in ds:
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:  # pydicom 2.x
            from pydicom.pixel_data_handlers.util import apply_modality_lut
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    values = arr.astype(np.float64)
    if slope != 1.0 or intercept != 0.0:
        values = values * slope + intercept
    return values


def _first(value) -> Optional[float]:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _voi(ds, values: np.ndarray, bits: int) -> np.ndarray:
    if "VOILUTSequence" in ds:
        try:
            from pydicom.pixels import apply_voi_lut
        except ImportError:
            from pydicom.pixel_data_handlers.util import apply_voi_lut
        return scale_to_uint8_range(np.asarray(apply_voi_lut(values, ds), dtype=np.float64))
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        return window(values, center, width, function)
    if bits <= 8 and values.min() >= 0 and values.max() <= 255:
        return np.rint(values).astype(np.uint8)
    return scale_to_uint8_range(values)


def scale_to_uint8_range(values: np.ndarray) -> np.ndarray:
    """Stretch min..max to 0..255 (no window in the file)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window (LINEAR, LINEAR_EXACT or SIGMOID) onto 0..255."""
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        y = np.clip((values - center) / width + 0.5, 0.0, 1.0)
    else:
        y = np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) if width > 1 else (
            (values > center - 0.5).astype(np.float64))
    return np.rint(y * 255.0).astype(np.uint8)
