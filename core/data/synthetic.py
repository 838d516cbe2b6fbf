"""Built-in phantom chest X-rays: the embedded default, so everything works with no data on disk.

Each image has a body outline, two lung fields with ribs, a heart shadow and the mediastinum.
Findings are drawn into the anatomy (enlarged heart, basal effusion, nodules, a patchy opacity,
an apical pneumothorax). Images come from several "scanners" that differ in contrast curve,
noise, blur and exposure, and the scanners see different finding rates, as real sites do. The
whole set is a pure function of (seed, size, img_size), so runs and tests are repeatable.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.data import register_dataset
from core.data.base import ArrayTable, DatasetBundle, data_seed

FINDINGS = ["Cardiomegaly", "Effusion", "Nodule", "Opacity", "Pneumothorax"]
MULTICLASS = ["Normal", "Effusion", "Nodule", "Opacity"]
BINARY = ["Normal", "Abnormal"]

# Scanner domains: (name, gamma, noise sd, blur sigma in px at 64 px, exposure offset, finding-rate scale)
SCANNERS = [
    ("scanner_A", 1.0, 0.02, 0.0, 0.00, 1.0),
    ("scanner_B", 0.6, 0.05, 0.8, 0.10, 0.7),
    ("scanner_C", 1.7, 0.03, 0.4, -0.08, 1.3),
    ("scanner_D", 1.1, 0.10, 1.4, 0.04, 1.0),
]
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def _grid(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return yy.expand(n, size, size), xx.expand(n, size, size)


def _ellipse(yy, xx, cy, cx, ry, rx, soft=0.04):
    """Soft-edged filled ellipse, one per image (parameters are (N,) tensors)."""
    d = ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2
    return torch.sigmoid((1.0 - d) / soft)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    img = images[:, None]
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return img[:, 0]


def _findings_for(task: str, n: int, domain: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(finding mask (N, len(FINDINGS)) bool, target) for the task."""
    scale = torch.tensor([s[5] for s in SCANNERS])[domain]
    if task == "multiclass":
        # One class per image; scanners shift the mix a little (site prevalence differs).
        probs = torch.tensor([0.34, 0.22, 0.22, 0.22]).expand(n, 4).clone()
        probs[:, 1:] *= scale[:, None]
        cls = torch.multinomial(probs / probs.sum(1, keepdim=True), 1, generator=g)[:, 0]
        mask = torch.zeros(n, len(FINDINGS), dtype=torch.bool)
        for c, finding in enumerate(MULTICLASS[1:], start=1):
            mask[:, FINDINGS.index(finding)] = cls == c
        return mask, cls.long()
    rates = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.15])
    mask = torch.rand(n, len(FINDINGS), generator=g) < (rates[None] * scale[:, None]).clamp(max=0.9)
    if task == "multilabel":
        return mask, mask.float()
    if task == "binary":
        abnormal = torch.rand(n, generator=g) < 0.5
        mask &= abnormal[:, None]
        # Every abnormal image shows at least one finding.
        empty = abnormal & ~mask.any(1)
        pick = torch.randint(0, len(FINDINGS) - 1, (n,), generator=g)
        mask[empty, pick[empty]] = True
        return mask, abnormal.long()
    raise ValueError(f"synthetic_task: must be multiclass, multilabel or binary (got {task!r})")


def _confounded(domain, mask, target, task: str, share: float, g: torch.Generator) -> torch.Tensor:
    """The scanner of a `share` of the images set by the label: class c (single-label) or the first
    finding (multi-label; none -> scanner 0) goes to scanner c mod the number of scanners."""
    if task == "multilabel":
        first = torch.where(mask.any(1), mask.float().argmax(1) + 1, torch.zeros_like(domain))
        by_label = first % len(SCANNERS)
    else:
        by_label = target.long() % len(SCANNERS)
    chosen = torch.rand(len(domain), generator=g) < share
    return torch.where(chosen, by_label, domain)


def render_phantoms(n: int, size: int, seed: int, task: str = "multiclass", confound: float = 0.0):
    """Return (images uint8 (N,H,W), targets, domains (N,), finding mask). Pure function of its inputs.

    `confound`: share of images re-assigned to the scanner their label picks, so the scanner's look
    predicts the class (a shortcut); 0 draws nothing extra (the same images as before the option)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _grid(n, size)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    domain = torch.randint(0, len(SCANNERS), (n,), generator=g)
    mask, target = _findings_for(task, n, domain, g)
    if confound > 0:
        domain = _confounded(domain, mask, target, task, confound, g)
    has = lambda name: mask[:, FINDINGS.index(name)].float()[:, None, None]  # noqa: E731

    body = _ellipse(yy, xx, u(0.05, 0.12), u(-0.03, 0.03), u(0.95, 1.05), u(0.78, 0.9))
    img = 0.08 + 0.45 * body
    # Lungs: dark fields left and right of the mediastinum.
    lung_ry, lung_rx, lung_cy = u(0.52, 0.6), u(0.26, 0.31), u(-0.05, 0.05)
    left = _ellipse(yy, xx, lung_cy, u(-0.42, -0.36), lung_ry, lung_rx)
    right = _ellipse(yy, xx, lung_cy, u(0.36, 0.42), lung_ry, lung_rx)
    lungs = torch.clamp(left + right, 0, 1)
    img = img - 0.3 * lungs
    # Ribs: bright arcs across the lung fields.
    phase, freq = u(0, math.pi), u(9.0, 11.0)
    ribs = torch.relu(torch.sin(freq[:, None, None] * (yy + 0.18 * xx.abs() ** 2) + phase[:, None, None]))
    img = img + 0.16 * lungs * ribs ** 3
    # Heart: normal or enlarged (Cardiomegaly), slightly left of centre, low in the chest.
    heart_r = u(0.2, 0.24)[:, None, None] * (1 + 0.55 * has("Cardiomegaly"))
    heart = _ellipse(yy, xx, u(0.2, 0.26), u(0.06, 0.12), heart_r[:, 0, 0] * 0.85, heart_r[:, 0, 0])
    img = img + 0.32 * heart
    # Effusion: fluid filling the base of one lung (meniscus shape).
    side = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    fluid_level = u(0.2, 0.35)[:, None, None]
    effusion = lungs * torch.sigmoid((yy - fluid_level - 0.15 * (xx * side[:, None, None])) / 0.04)
    effusion = effusion * ((xx * side[:, None, None]) > 0).float()
    img = img + 0.42 * has("Effusion") * effusion
    # Nodules: 1-3 small bright round spots inside the lungs.
    for k in range(3):
        present = has("Nodule") * (torch.rand(n, generator=g) < (1.0 if k == 0 else 0.5)).float()[:, None, None]
        cx = torch.where(torch.rand(n, generator=g) < 0.5, u(-0.5, -0.28), u(0.28, 0.5))
        nod = _ellipse(yy, xx, u(-0.35, 0.2), cx, u(0.06, 0.09), u(0.06, 0.09), soft=0.12)
        img = img + 0.3 * present * nod * lungs
    # Opacity (consolidation): a large blurred patch in one lung.
    cx = torch.where(torch.rand(n, generator=g) < 0.5, u(-0.45, -0.3), u(0.3, 0.45))
    patch = _ellipse(yy, xx, u(-0.25, 0.15), cx, u(0.18, 0.26), u(0.14, 0.2), soft=0.35)
    texture = 0.7 + 0.3 * torch.rand(n, size, size, generator=g)
    img = img + 0.22 * has("Opacity") * patch * lungs * texture
    # Pneumothorax: apical region of one lung with no lung markings (darker, ribs erased).
    apex = lungs * torch.sigmoid((-(yy - lung_cy[:, None, None]) - 0.2) / 0.05)
    apex = apex * ((xx * side[:, None, None]) < 0).float()
    img = img - 0.12 * has("Pneumothorax") * apex - 0.1 * has("Pneumothorax") * apex * ribs ** 3

    # Scanner effects: exposure, contrast curve, blur, noise.
    out = torch.empty_like(img)
    for d, (_, gamma, noise, blur, offset, _) in enumerate(SCANNERS):
        sel = domain == d
        if not sel.any():
            continue
        x = _blur(img[sel], blur * size / 64.0)
        x = torch.clamp(x + offset, 0.0, 1.0) ** gamma
        x = x + noise * torch.randn(x.shape, generator=g)
        out[sel] = x
    images = (torch.clamp(out, 0.0, 1.0) * 255.0).round().to(torch.uint8)
    return images.numpy(), target.numpy(), domain.numpy(), mask.numpy()


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(SPLIT_FRACTIONS[0] * n))
    n_val = int(round(SPLIT_FRACTIONS[1] * n))
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


@register_dataset("synthetic")
def build(config, progress) -> DatasetBundle:
    task = "multilabel" if config.multi_label else config.synthetic_task
    if config.multi_label is False and task == "multilabel":
        task = "multiclass"
    size = config.img_size or 64
    progress(0, config.synthetic_size, "rendering phantoms")
    images, targets, domains, _ = render_phantoms(config.synthetic_size, size, data_seed(config), task,
                                                  config.synthetic_confound)
    progress(config.synthetic_size, config.synthetic_size, "rendering phantoms")
    classes = {"multiclass": MULTICLASS, "multilabel": FINDINGS, "binary": BINARY}[task]
    ids = [f"phantom_{i:05d}" for i in range(len(images))]
    full = ArrayTable(images, targets, domains, ids=ids, patients=ids)
    train_idx, val_idx, test_idx = split_indices(len(images), data_seed(config))
    return DatasetBundle(
        name="synthetic",
        classes=list(classes),
        multi_label=(task == "multilabel"),
        train=full.subset(train_idx),
        val=full.subset(val_idx),
        test=full.subset(test_idx),
        domain_names=[s[0] for s in SCANNERS],
        notes=[f"synthetic phantoms: {len(images)} images, {size}px, task {task}, {len(SCANNERS)} scanner domains"
               + (f", scanner set by the label for {config.synthetic_confound:.0%} of them (synthetic_confound)"
                  if config.synthetic_confound else "")],
    )
