"""How much of the source do the model's features carry? (`medcls eval RUN --domain_probe`)

A multinomial logistic regression on the penultimate (pooled) features predicts the source of each
image, cross-validated by patient (no patient in both the fitting and the scored fold), and its
accuracy is set against always guessing the commonest source. Features that name the scanner or the
hospital far better than the majority guess are features a classifier can take a shortcut through.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from core.evaluation.run_model import ProgressFn

FOLDS = 5
STEPS = 300
L2 = 1e-3


@torch.no_grad()
def penultimate_features(model: nn.Module, normalize_fn, table, batch_size: int = 64,
                         progress: Optional[ProgressFn] = None) -> np.ndarray:
    """(N, D) pooled backbone features of a split, in table order (float32, no head)."""
    from core.training.loader import TableDataset, epoch_batches, make_loader

    was_training = model.training
    model.eval()
    dataset = TableDataset(table, None, 0)
    out, done = [], 0
    for images, _, _ in make_loader(dataset, epoch_batches(len(dataset), batch_size, 0, 0, shuffle=False,
                                                           drop_last=False), 0, False):
        out.append(model.pool(model.features(normalize_fn(images))).float().cpu().numpy())
        done += len(images)
        if progress is not None:
            progress(done, len(dataset), "domain probe: features")
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def patient_folds(patients: Optional[list], n: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold of each image; images of one patient share a fold (each image its own patient when unknown)."""
    keys = list(patients) if patients is not None else [str(i) for i in range(n)]
    unique = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[j]: int(i % folds) for i, j in enumerate(order)}
    return np.array([fold_of[k] for k in keys])


def fit_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int) -> np.ndarray:
    """Standardised features, L2-regularised softmax regression (L-BFGS); predicted class of test_x."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = torch.tensor((train_x - mean) / std, dtype=torch.float64)
    y = torch.tensor(train_y, dtype=torch.int64)
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=STEPS, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight + bias, y) + L2 * (weight ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    test = torch.tensor((test_x - mean) / std, dtype=torch.float64)
    return (test @ weight + bias).argmax(1).detach().numpy()


def domain_probe(features: np.ndarray, domains: np.ndarray, patients: Optional[list], domain_names: list[str],
                 folds: int = FOLDS, seed: int = 0) -> dict:
    """Cross-validated source accuracy of the features against the majority-source baseline."""
    domains = np.asarray(domains, dtype=np.int64)
    present = np.unique(domains)
    if len(present) < 2:
        raise ValueError("domain probe: the split holds a single source, there is nothing to predict")
    fold = patient_folds(patients, len(domains), min(folds, len(domains)), seed)
    predicted = np.full(len(domains), -1)
    for k in np.unique(fold):
        fit, held = fold != k, fold == k
        if len(np.unique(domains[fit])) < 2:
            predicted[held] = domains[fit][0]
            continue
        predicted[held] = fit_predict(features[fit], domains[fit], features[held], int(domains.max()) + 1)
    counts = np.bincount(domains)
    return {"accuracy": float((predicted == domains).mean()), "majority_accuracy": float(counts.max() / len(domains)),
            "majority_source": domain_names[int(counts.argmax())], "folds": int(len(np.unique(fold))),
            "images": int(len(domains)), "by": "patient" if patients is not None else "image"}


def probe_line(result: dict) -> str:
    return (f"domain probe: the features name the source of {result['accuracy']:.1%} of the images "
            f"({result['folds']}-fold by {result['by']}), against {result['majority_accuracy']:.1%} for always "
            f"guessing '{result['majority_source']}'")
