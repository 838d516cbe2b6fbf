"""Small data sets written in the official layouts (no tests here), so every loader is tested on a
clone without the real fixtures: NIH ChestX-ray14 (Data_Entry csv, split lists, images_00N/images/),
COVIDx label files with 3, 4 and 5 fields, VinBigData's per-radiologist train.csv, DICOM written with
pydicom (MONOCHROME1/2, windows, rescale) and 16-bit PNG. Formats copied from the real files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
"""Verbatim: the two bracketed cells are unquoted, so the header splits into 11 csv cells."""
VIN_HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max"
VIN_NO_FINDING = 14


def radiograph(seed: int, size: int = 48, bits: int = 8) -> np.ndarray:
    """A textured gray image (not flat: the cache and decoders must keep its contrast)."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    ramp = np.linspace(0, top * 0.6, size)[None, :] + np.linspace(0, top * 0.3, size)[:, None]
    noise = rng.integers(0, max(2, top // 10), (size, size))
    return np.clip(ramp + noise, 0, top).astype(np.uint16 if bits > 8 else np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """8-bit (mode L) or 16-bit (mode I;16) grayscale PNG, by the array's dtype."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                **tags) -> Path:
    """A DX DICOM file (explicit VR little endian, 16 bits allocated) written with pydicom."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(str(path)).pixel_array.shape == pixels.shape
    return path


# ---------------------------------------------------------------- NIH ChestX-ray14
NIH_CYCLE = ["Cardiomegaly", "No Finding", "Effusion|Infiltration", "Atelectasis", "Mass|Nodule|Pneumonia",
             "No Finding", "Hernia", "Edema|Effusion"]


@dataclass
class NihLayout:
    root: Path
    labels: dict[str, list[str]] = field(default_factory=dict)
    """image -> findings (empty for No Finding)."""
    views: dict[str, str] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)
    test: list[str] = field(default_factory=list)
    train_val: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def write_nih(root: Path, n_patients: int = 12, per_patient: int = 2, test_patients: int = 3, missing: int = 1,
              sixteen_bit: int = 2) -> NihLayout:
    """Data_Entry_2017_v2020.csv + train_val_list.txt / test_list.txt (no trailing newline, as NIH ships
    them) + images spread over images_001/images/ ... images_003/images/. The last `missing` images
    are listed but not on disk; the first `sixteen_bit` are 16-bit PNGs."""
    layout = NihLayout(root=root)
    rows = [NIH_HEADER]
    k = 0
    for p in range(1, n_patients + 1):
        for follow_up in range(per_patient):
            name = f"{p:08d}_{follow_up:03d}.png"
            labels = NIH_CYCLE[k % len(NIH_CYCLE)]
            view = "AP" if k % 3 == 0 else "PA"
            rows.append(f"{name},{labels},{follow_up},{p},{40 + p},{'MF'[p % 2]},{view},2500,2048,0.168,0.168")
            layout.labels[name] = [] if labels == "No Finding" else labels.split("|")
            layout.views[name] = view
            layout.patients[name] = str(p)
            (layout.test if p > n_patients - test_patients else layout.train_val).append(name)
            k += 1
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "train_val_list.txt").write_text("\n".join(layout.train_val), encoding="utf-8")
    (root / "test_list.txt").write_text("\n".join(layout.test), encoding="utf-8")
    names = list(layout.labels)
    layout.missing = names[len(names) - missing:] if missing else []
    for i, name in enumerate(names):
        if name in layout.missing:
            continue
        pixels = radiograph(i, bits=16 if i < sixteen_bit else 8)
        write_png(root / f"images_{1 + i % 3:03d}" / "images" / name, pixels)
    return layout


# ---------------------------------------------------------------- COVIDx
def covidx_line(fields: int, i: int, label: str, source: str = "cohen") -> tuple[str, str]:
    """(line, file name) in the 3-field (patient file label), 4-field (+ source) or 5-field layout
    (the patient id itself has a space, as in 'COVID 70 COVID(70).png COVID-19 sirm')."""
    if fields == 3:
        name = f"img{i:03d}.png"
        return f"p{i} {name} {label}", name
    if fields == 4:
        name = f"img{i:03d}.jpg"
        return f"p{i} {name} {label} {source}", name
    name = f"COVID({i}).png"
    return f"COVID {i} {name} {label} {source}", name


def write_covidx_labels(path: Path, entries: list[tuple[int, int, str, str]]) -> list[str]:
    """A COVIDx label file from (fields, index, label, source) entries; returns the image names."""
    lines, names = [], []
    for fields, i, label, source in entries:
        line, name = covidx_line(fields, i, label, source)
        lines.append(line)
        names.append(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return names


def write_covidx(root: Path, version: str, train: list[tuple[int, int, str, str]],
                 test: list[tuple[int, int, str, str]]) -> None:
    """train_COVIDx{version}.txt / test_COVIDx{version}.txt with the images in train/ and test/."""
    for split, entries in (("train", train), ("test", test)):
        names = write_covidx_labels(root / f"{split}_COVIDx{version}.txt", entries)
        for k, name in enumerate(names):
            pixels = radiograph(100 + k)
            path = root / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, format="JPEG" if name.endswith(".jpg") else "PNG")


# ---------------------------------------------------------------- VinBigData
def write_vinbigdata(root: Path, reads: dict[str, list[tuple[str, int, str]]], images: str = "png") -> None:
    """train.csv with one row per radiologist finding (rad_id, class_id, class_name; class 14 'No
    finding' has empty boxes) and the images in train/ as PNG or DICOM ('.dicom', as Kaggle ships)."""
    rows = [VIN_HEADER]
    for image_id, marks in reads.items():
        for rad, class_id, class_name in marks:
            box = ",,," if class_id == VIN_NO_FINDING else "10.0,12.0,30.0,33.0"
            rows.append(f"{image_id},{class_name},{class_id},{rad},{box}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for k, image_id in enumerate(reads):
        if images == "png":
            write_png(root / "train" / f"{image_id}.png", radiograph(200 + k))
        else:
            write_dicom(root / "train" / f"{image_id}.dicom", radiograph(200 + k, bits=12), bits_stored=12)
