"""Data scale (issue 17.4): peak RSS and pixel-cache build time from 1k to 100k generated images.

    uv run python bench/data_scale.py [--sizes 1000 5000 20000] [--big] [--img-size 224] [--src 64]

Writes one csv dataset (`path,label,patient` rows, small 8-bit gray PNGs of --src px) with as many
images as the largest size, then for each size opens it with `--dataset csv` (the real loader: label
file, patient split, pixel cache build at --img-size) in a fresh process, and reports the wall time
of that first load (decode + resize + write to the uint8 memmap), then reads every training image
once. Memory is the process's private resident memory (peak RssAnon, sampled every 20 ms) and its
growth over the value after the imports; the peak VmRSS (ru_maxrss) is shown too, but it also
counts the memmap's file pages, which the kernel can drop whenever memory is short. `--big` adds 100k. Ratios against the smallest size
are printed last: time per image (1.0 = linear) and private memory against the cache size (the
pixels live in the memmap, so private memory must grow far slower than the cache).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def status_mib(field: str) -> float:
    """A /proc/self/status memory line in MiB (VmRSS: all resident pages; RssAnon: private memory,
    without the file-backed pages of the memmap, which the kernel can drop at any time)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class AnonPeak:
    """Samples RssAnon every 20 ms in a thread: the kernel keeps no peak for it."""

    def __init__(self):
        import threading

        self.peak = status_mib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, status_mib("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, status_mib("RssAnon"))


def write_images(folder: Path, n: int, src: int) -> list[tuple[str, str, str]]:
    """n distinct gray PNGs (smooth blobs + noise), written once; 4 classes, 10 images per patient."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:src, 0:src] / src
    rows = []
    for i in range(n):
        name = f"img_{i:06d}.png"
        if not (folder / name).exists():
            cy, cx = rng.random(2)
            img = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 8) + rng.normal(0, 12, (src, src))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(folder / name, compress_level=1)
        rows.append((name, ["Normal", "Effusion", "Nodule", "Opacity"][i % 4], f"p{i // 10:06d}"))
    return rows


def child(args) -> None:
    """One measurement in a fresh process: load the csv dataset, building its pixel cache."""
    import torch  # noqa: F401 - imported before the baseline, as in a real run

    from core.data import load_dataset
    from core.config.resolve import resolve_config

    cfg = resolve_config({"dataset": "csv", "data_dir": args.data, "csv": args.csv, "cache_dir": args.cache,
                          "img_size": args.img_size, "model": "resnet18"}, vram_gib=None).config
    base = status_mib("RssAnon")
    sampler = AnonPeak()
    t0 = time.perf_counter()
    bundle = load_dataset(cfg)
    took = time.perf_counter() - t0
    n = len(bundle.train) + len(bundle.val) + (len(bundle.test) if bundle.test is not None else 0)
    # read every training image once, as an epoch does: pixels come from the map, not private memory
    checksum = sum(int(bundle.train.image(i).sum()) for i in range(len(bundle.train)))
    anon_peak = sampler.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": took, "base_mib": base, "peak_mib": anon_peak, "rss_peak_mib": rss_peak,
                      "checksum": checksum}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--big", action="store_true", help="add 100,000 images (about 5 GB of cache at 224 px)")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--src", type=int, default=64, help="side of the generated PNGs")
    ap.add_argument("--workdir", help="keep the generated images here (default: a temporary folder)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    sizes = sorted(set(args.sizes + ([100_000] if args.big else [])))
    with tempfile.TemporaryDirectory(prefix="medcls-scale-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        images = work / "images"
        t0 = time.perf_counter()
        rows = write_images(images, max(sizes), args.src)
        print(f"data scale: {max(sizes)} generated {args.src}px PNGs in {time.perf_counter() - t0:.1f} s; "
              f"cache at {args.img_size}px")
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        print(f"{'images':>8} {'build s':>8} {'img/s':>7} {'cache MiB':>9} {'peak anon MiB':>13} "
              f"{'anon growth MiB':>15} {'peak VmRSS MiB':>14}")
        results = []
        for n in sizes:
            label_file = work / f"labels_{n}.csv"
            with open(label_file, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["path", "label", "patient"])
                writer.writerows(rows[:n])
            cache = work / f"cache_{n}"
            out = subprocess.run([sys.executable, __file__, "--child", "--data", str(images), "--csv", str(label_file),
                                  "--cache", str(cache), "--img-size", str(args.img_size)],
                                 check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["cache_mib"] = n * args.img_size ** 2 / 2**20
            r["growth"] = r["peak_mib"] - r["base_mib"]
            results.append(r)
            print(f"{n:>8} {r['seconds']:>8.1f} {n / r['seconds']:>7.0f} {r['cache_mib']:>9.0f} "
                  f"{r['peak_mib']:>13.0f} {r['growth']:>15.0f} {r['rss_peak_mib']:>14.0f}", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        first, last = results[0], results[-1]
        scale = last["n"] / first["n"]
        time_ratio = (last["seconds"] / last["n"]) / (first["seconds"] / first["n"])
        print(f"{scale:.0f}x the images: cache {last['cache_mib'] / first['cache_mib']:.0f}x, build time "
              f"{last['seconds'] / first['seconds']:.1f}x, peak private memory {last['peak_mib'] / first['peak_mib']:.2f}x, "
              f"its growth {last['growth'] - first['growth']:.0f} MiB for {last['cache_mib'] - first['cache_mib']:.0f} MiB "
              f"more cache")
        print(f"time per image {last['n']} vs {first['n']}: {time_ratio:.2f}x (1.0 = linear); peak private memory ratio "
              f"{last['peak_mib'] / first['peak_mib']:.2f}x for {scale:.0f}x the images")


if __name__ == "__main__":
    main()
