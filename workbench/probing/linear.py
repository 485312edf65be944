"""The linear probe (t-ReX / CoG protocol) on frozen features, fast and exact.

L2-normalised features, multinomial logistic regression, the weight decay chosen on a held-out 20%
per-class split of the training set, then the model refit on the full training set with that weight
decay; top-1 on the test split. The reference tooling (scikit-learn L-BFGS with 30 Optuna trials)
refits from scratch for every trial; here full-batch L-BFGS in torch, on whitened features (an exact
reparametrisation that fixes the conditioning), walks a weight-decay path from strong to weak with
warm starts (``benchmarks/probe.py`` measures both).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

WEIGHT_DECAYS = tuple(10.0**-e for e in range(0, 9))  # 1 ... 1e-8: scikit-learn C = 1 / (wd * n), ~1e-4 to ~1e4


class _Whitened:
    """Features in a whitened basis, for fast and *exact* logistic regression.

    With W = P V (P the inverse square root of the feature covariance) the objective
    CE(X W + b) + wd/2 ||W||^2 becomes CE((X P) V + b) + wd/2 ||P V||^2: the same problem and the same
    optimum, but the data term is now well conditioned, so L-BFGS needs tens of iterations at any
    weight decay instead of hundreds. Features are L2-normalised and centred on the training mean
    first (the bias absorbs the shift).
    """

    def __init__(self, train_x: torch.Tensor, eps: float = 1e-4):
        x = F.normalize(train_x.float(), dim=1)
        self.center = x.mean(0)
        x = x - self.center
        evals, evecs = torch.linalg.eigh((x.t() @ x / len(x)).double())
        inv_sqrt = (evals.clamp_min(0) + eps * evals.mean()).rsqrt()
        self.P = ((evecs * inv_sqrt) @ evecs.t()).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=1) - self.center) @ self.P


def _fit(xw, y, n_classes, wd, P, init=None, max_iter=100):
    """Multinomial logistic regression by full-batch L-BFGS on whitened features; returns (V, b) stacked."""
    v = torch.zeros(xw.shape[1] + 1, n_classes) if init is None else init.clone()
    v.requires_grad_(True)
    opt = torch.optim.LBFGS([v], lr=1, max_iter=max_iter, history_size=10, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xw @ v[:-1] + v[-1], y) + 0.5 * wd * (P @ v[:-1]).pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return v.detach()


def _accuracy(v, xw, y) -> float:
    return 100.0 * ((xw @ v[:-1] + v[-1]).argmax(1) == y).float().mean().item()


def _neg_log_loss(v, xw, y) -> float:
    return -F.cross_entropy(xw @ v[:-1] + v[-1], y).item()


def _holdout_split(y: torch.Tensor, frac: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    val = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val[idx[: int(round(frac * len(idx)))]] = True
    return ~val, val


class LinearClassifier(torch.nn.Module):
    """A fitted linear probe as a module: logits = normalize(features) @ weight.T + bias.

    The whitening and centring used while fitting are folded into ``weight`` (C, D) and ``bias`` (C,),
    so it applies to raw features. On top of a frozen encoder it makes a probed model whose
    predictions can be distilled.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)  # (C, D)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)  # (C,)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features.float(), dim=-1), self.weight, self.bias)

    @torch.no_grad()
    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return 100.0 * (self(features).argmax(1) == labels).float().mean().item()


def fit_linear_probe(train_x, train_y, n_classes: int | None = None, weight_decays=WEIGHT_DECAYS,
                     val_frac: float = 0.2, seed: int = 0, weight_decay: float | None = None, refine: int = 2,
                     select: str = "top1") -> tuple[LinearClassifier, dict]:
    """Fit the tuned logistic-regression probe; returns it and ``{"weight_decay", "val_top1"}``.

    The weight decay (mean cross-entropy + wd/2 ||W||^2, i.e. scikit-learn's C = 1 / (wd * n)) is
    chosen on the held-out split: first by walking ``weight_decays`` (decades) from strong to weak
    with warm starts, then by ``refine`` bisections of the log-scale step around the best one
    (half, then quarter decades): held-out accuracy can move by 2 points within a decade. The final
    model is refit on the full training set, warm-started from the held-out solution. With
    ``weight_decay`` given the search is skipped (few-shot probes are too small to split).

    ``select="top1"`` picks the decay with the best held-out accuracy (the probing protocol; ties go
    to the stronger decay); ``select="log_loss"`` the one with the best held-out cross-entropy, i.e.
    probabilities and not only the argmax: the weight decay sets the scale of the logits, which a
    probe whose predictions are distilled must get right.
    """
    if select not in ("top1", "log_loss"):
        raise ValueError(f"select must be 'top1' or 'log_loss', got {select!r}")
    score = _accuracy if select == "top1" else _neg_log_loss
    n_classes = int(train_y.max()) + 1 if n_classes is None else n_classes
    init, val_top1 = None, None
    if weight_decay is None:
        fit, val = _holdout_split(train_y, val_frac, seed)
        if not val.any():
            raise ValueError(f"no image to hold out for choosing the weight decay ({len(train_y)} training images, "
                             f"val_frac={val_frac}); pass weight_decay")
        white = _Whitened(train_x[fit])  # statistics of the fitting part only: the held-out part stays unseen
        xf, xv, yf, yv = white(train_x[fit]), white(train_x[val]), train_y[fit], train_y[val]
        tried = {}  # log10(wd) -> (held-out score, solution)

        def evaluate(log_wd, start):
            v = _fit(xf, yf, n_classes, 10.0**log_wd, white.P, init=start)
            tried[log_wd] = (score(v, xv, yv), v)

        # Strong to weak, each solution warm-starting the next. The whole path is walked: held-out
        # accuracy is not unimodal in the decay (double descent near the interpolation threshold).
        v = None
        for log_wd in sorted((math.log10(w) for w in weight_decays), reverse=True):
            evaluate(log_wd, v)
            v = tried[log_wd][1]
        step = (max(tried) - min(tried)) / max(1, len(tried) - 1)
        for _ in range(refine if len(tried) > 1 else 0):
            step /= 2
            centre = max(tried, key=lambda k: tried[k][0])
            for log_wd in (centre - step, centre + step):
                if log_wd not in tried:
                    evaluate(log_wd, tried[centre][1])
        log_wd = max(tried, key=lambda k: tried[k][0])
        v = tried[log_wd][1]
        val_top1, weight_decay = _accuracy(v, xv, yv), 10.0**log_wd
        init = _rebase(v, white, _Whitened(train_x))
    white = _Whitened(train_x)
    v = _fit(white(train_x), train_y, n_classes, weight_decay, white.P, init=init, max_iter=200)
    weight = white.P @ v[:-1]  # (D, C): whitening folded in
    bias = v[-1] - white.center @ weight
    return LinearClassifier(weight.t().contiguous(), bias), {"weight_decay": weight_decay, "val_top1": val_top1}


def linear_probe(train_x, train_y, test_x, test_y, weight_decays=WEIGHT_DECAYS, val_frac: float = 0.2,
                 seed: int = 0, weight_decay: float | None = None, refine: int = 2) -> dict:
    """Top-1 (%) of a tuned logistic-regression probe (``fit_linear_probe``), and the chosen weight decay."""
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    probe, info = fit_linear_probe(train_x, train_y, n_classes, weight_decays, val_frac, seed, weight_decay, refine)
    return {"top1": probe.accuracy(test_x, test_y), **info}


def _rebase(v: torch.Tensor, old: _Whitened, new: _Whitened) -> torch.Tensor:
    """The same linear classifier expressed in another whitened basis (for warm starts).

    Logits are (n(x) - c) P V + b = n(x) W - c W + b with W = P V, so V' = P'^-1 W and
    b' = b - c W + c' W.
    """
    w = old.P @ v[:-1]
    b = v[-1] - old.center @ w + new.center @ w
    return torch.cat([torch.linalg.solve(new.P, w), b[None]])
