"""Data pipeline benchmark (issue 4): cached uint8 memmap loader vs decoding PNGs every epoch.

Both loaders feed the same DataLoader with the same training transforms (core.training.transforms
standard_transform), so the difference is only where the pixels come from. By default the NIH
fixture images are re-encoded at 1024x1024 (the size of the real NIH PNGs) with a little
detector-like noise, so the decode cost resembles the real data; --native uses the 256 px
fixture files as they are. Prints images/s of both and the ratio (target >= 5x).

    uv run python bench/data_pipeline.py [--n 256] [--src_size 1024] [--img_size 224] [--workers 0]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.data.cache import CachedTable, build_cache  # noqa: E402
from core.data.decode import load_resized  # noqa: E402
from core.training.transforms import standard_transform  # noqa: E402

NIH_IMAGES = REPO.parent / "shared" / "fixtures" / "nih_chestxray14" / "images"


class PixelDataset(Dataset):
    """(transformed image, index) from a pixel function: the only part that differs between runs."""

    def __init__(self, pixels, n: int, img_size: int):
        self.pixels = pixels
        self.n = n
        self.transform = standard_transform(img_size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.pixels(i)).unsqueeze(0)
        return self.transform(img), i


class DecodeEachTime:
    """Picklable pixel function for the uncached loader (DataLoader workers)."""

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size

    def __call__(self, i: int) -> np.ndarray:
        return load_resized(self.paths[i], self.size)


def make_source_images(folder: Path, n: int, src_size: int, native: bool) -> list[Path]:
    sources = sorted(NIH_IMAGES.glob("*.png"))
    if not sources:
        raise SystemExit(f"no fixture images in {NIH_IMAGES}")
    if native:
        return [sources[i % len(sources)] for i in range(n)]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as im:
            big = np.asarray(im.convert("L").resize((src_size, src_size), Image.BICUBIC), dtype=np.float32)
        noisy = np.clip(big + rng.normal(0, 3.0, big.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.png"
        Image.fromarray(noisy).save(path)
        paths.append(path)
    return paths


def make_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))


def one_epoch(loader: DataLoader) -> float:
    """Images/s of one full pass."""
    start = time.perf_counter()
    seen = 0
    for images, _ in loader:
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def interleaved_rates(loaders: dict[str, DataLoader], rounds: int) -> dict[str, list[float]]:
    """Alternate the loaders epoch by epoch, so a burst of load from elsewhere hits both alike."""
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            rates[name].append(one_epoch(loader))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images in the benchmark set")
    parser.add_argument("--src_size", type=int, default=1024, help="side of the source PNGs (NIH: 1024)")
    parser.add_argument("--native", action="store_true", help="use the 256 px fixture PNGs as they are")
    parser.add_argument("--img_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for both loaders")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per loader, interleaved")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="medcls_bench_") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        paths = make_source_images(tmp_path, args.n, args.src_size, args.native)
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        with Image.open(paths[0]) as im:
            src = f"{im.size[0]}x{im.size[1]} {im.mode} PNG"
        print(f"source: {args.n} x {src}, mean {mean_kb:.0f} KiB ({time.perf_counter() - t0:.1f} s to write)")

        start = time.perf_counter()
        cache = build_cache(paths, tmp_path / "cache", args.img_size)
        build_s = time.perf_counter() - start
        assert cache.ok.all(), cache.failures
        print(f"cache build: {build_s:.2f} s ({args.n / build_s:.0f} img/s, one-off, threads={os.cpu_count()})")

        table = CachedTable(cache.images_file, np.zeros(len(paths), dtype=np.int64),
                            np.zeros(len(paths), dtype=np.int64), [p.name for p in paths])
        loaders = {
            "cached": make_loader(PixelDataset(table.image, len(paths), args.img_size), args.batch_size, args.workers),
            "decoded": make_loader(PixelDataset(DecodeEachTime(paths, args.img_size), len(paths), args.img_size),
                                   args.batch_size, args.workers),
        }
        rates = interleaved_rates(loaders, args.rounds)
        del loaders

    cached, decoded = max(rates["cached"]), max(rates["decoded"])
    ratio = cached / decoded
    median_ratio = float(np.median(rates["cached"])) / float(np.median(rates["decoded"]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    print(f"settings: img_size {args.img_size}, batch {args.batch_size}, workers {args.workers}, "
          f"best of {args.rounds} interleaved epochs each, standard_transform (RandomResizedCrop + RandomAffine + ColorJitter)")
    print("epochs (img/s): decoded " + ", ".join(f"{r:.0f}" for r in rates["decoded"])
          + " | cached " + ", ".join(f"{r:.0f}" for r in rates["cached"]))
    print(f"decode PNG each epoch: {decoded:8.1f} img/s")
    print(f"cached memmap loader : {cached:8.1f} img/s")
    print(f"ratio                : {ratio:8.1f}x  (medians: {median_ratio:.1f}x; target >= 5x: "
          f"{'met' if ratio >= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
