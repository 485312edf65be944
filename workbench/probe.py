"""Linear probes on frozen features.

Protocol (t-ReX / CoG): L2-normalised features, multinomial logistic regression, the weight decay
chosen on a held-out 20% per-class split of the training set, then the model retrained on the full
training set with that weight decay, and top-1 reported on the test split. The solver is full-batch
L-BFGS in torch, warm-started along the regularisation path from strong to weak, which is both
fast and exact enough for the small heads involved.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@torch.no_grad()
def extract_features(encode: Callable[[torch.Tensor], torch.Tensor], data, split: str, device,
                     batch_size: int = 256) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``encode`` over a split: (N, D) float32 features on CPU, and the labels of every task."""
    feats, labels = [], {}
    for batch in data.loader(split, batch_size):
        if batch is None:
            continue
        images, ys = batch
        with torch.inference_mode():
            feats.append(encode(images.to(device)).float().cpu())
        for t, y in ys.items():
            labels.setdefault(t, []).append(y)
    return torch.cat(feats), {t: torch.cat(v) for t, v in labels.items()}


def _fit(x, y, n_classes, wd, init=None, max_iter=200):
    d = x.shape[1]
    w = torch.zeros(d + 1, n_classes, dtype=x.dtype) if init is None else init.clone()
    w.requires_grad_(True)
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # bias as an extra, unregularised column
    opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * wd * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _accuracy(w, x, y) -> float:
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    return 100.0 * ((xb @ w).argmax(1) == y).double().mean().item()


def _holdout_split(y: torch.Tensor, frac: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    val = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val[idx[: int(round(frac * len(idx)))]] = True
    return ~val, val


def linear_probe(train_x, train_y, test_x, test_y, weight_decays=WEIGHT_DECAYS, val_frac: float = 0.2,
                 seed: int = 0) -> dict:
    """Top-1 (%) of a tuned logistic-regression probe, and the chosen weight decay."""
    train_x = F.normalize(train_x.double(), dim=1)
    test_x = F.normalize(test_x.double(), dim=1)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    fit, val = _holdout_split(train_y, val_frac, seed)
    best, w = None, None
    for wd in sorted(weight_decays, reverse=True):  # strong to weak: each solution warm-starts the next
        w = _fit(train_x[fit], train_y[fit], n_classes, wd, init=w)
        acc = _accuracy(w, train_x[val], train_y[val])
        if best is None or acc > best[0]:
            best = (acc, wd)
    w = _fit(train_x, train_y, n_classes, best[1])
    return {"top1": _accuracy(w, test_x, test_y), "weight_decay": best[1], "val_top1": best[0]}


def probe_models(encoders: dict[str, Callable], data, device, log=print) -> dict[str, dict[str, float]]:
    """{model: encode_fn} -> {model: {task: top1}} for every task of ``data``."""
    results = {}
    for name, encode in encoders.items():
        xtr, ytr = extract_features(encode, data, "train", device)
        xte, yte = extract_features(encode, data, "test", device)
        results[name] = {t: round(linear_probe(xtr, ytr[t], xte, yte[t])["top1"], 2) for t in data.tasks}
        log(f"  probe {name}: " + ", ".join(f"{t} {v:.1f}%" for t, v in results[name].items()))
    return results
