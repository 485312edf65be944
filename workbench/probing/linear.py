"""The linear probe (t-ReX / CoG protocol) on frozen features, fast and exact.

L2-normalised features, multinomial logistic regression, the weight decay chosen on a held-out 20%
per-class split of the training set, then the model refit on the full training set with that weight
decay; top-1 on the test split. The reference tooling (scikit-learn L-BFGS with 30 Optuna trials)
refits from scratch for every trial; here full-batch L-BFGS in torch, in the eigenbasis of the feature
covariance rescaled for each weight decay (an exact reparametrisation that makes the problem well
conditioned at every decay), walks a weight-decay path from strong to weak with warm starts, a few
iterations per decay, and stops once held-out accuracy has fallen for two decades; only the refit runs
to convergence (``benchmarks/probe.py`` measures both). ``reference_fit_linear_probe`` is the plain
version, tested equal to it.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

WEIGHT_DECAYS = tuple(10.0**-e for e in range(0, 9))  # 1 ... 1e-8: scikit-learn C = 1 / (wd * n), ~1e-4 to ~1e4


class _Basis:
    """Features in the eigenbasis of their covariance, for fast and *exact* logistic regression.

    Features are L2-normalised and centred on the training mean (the bias absorbs the shift), then
    rotated onto the eigenvectors U of their covariance (eigenvalues ``lam``): an orthogonal change of
    basis, so W = U A gives the same logits, the same ||W|| = ||A|| and the same optimum. In this basis
    the Hessian of CE(X W + b) + wd/2 ||W||^2 is about h diag(lam) + wd (h the curvature of the
    softmax, about 1 / classes): diagonal, so ``_fit`` rescales each coordinate by 1 / sqrt(h lam + wd)
    and L-BFGS sees a problem conditioned near 1 at *every* weight decay (plain whitening, which divides
    by sqrt(lam) alone, leaves the strong-decay end ill-conditioned). Any basis is exact: the one of the
    fitting part serves the refit on the whole training set too.
    """

    def __init__(self, train_x: torch.Tensor):
        x = F.normalize(train_x.float(), dim=1)
        self.center = x.mean(0)
        x = x - self.center
        lam, U = torch.linalg.eigh((x.t() @ x / len(x)).double())
        self.lam, self.U = lam.clamp_min(0).float(), U.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=1) - self.center) @ self.U


def _fit(y, labels, n_classes, wd, lam, init=None, max_iter=200, tol=1e-6):
    """Multinomial logistic regression, mean CE(Y A + b) + wd/2 ||A||^2, by full-batch L-BFGS on
    preconditioned coordinates (``_Basis``); the gradient by hand: two matrix products per evaluation.
    Returns (A, b)."""
    h = 1.0 / n_classes
    s = (h * lam + wd).rsqrt()[:, None]  # A = s Z: the Hessian in Z is about the identity
    sb = h**-0.5
    a0, b0 = init if init is not None else (torch.zeros(y.shape[1], n_classes), torch.zeros(n_classes))
    z = torch.cat([a0 / s, b0[None] / sb]).requires_grad_(True)
    rows, n = torch.arange(len(y)), len(y)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=max_iter, history_size=10, tolerance_grad=tol,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    @torch.no_grad()
    def closure():
        a, b = s * z[:-1], sb * z[-1]
        logits = torch.addmm(b, y, a)
        lse = logits.logsumexp(1, keepdim=True)
        loss = (lse[:, 0] - logits[rows, labels]).mean() + 0.5 * wd * a.pow(2).sum()
        g = logits.sub_(lse).exp_()  # softmax, in place
        g[rows, labels] -= 1
        g /= n
        z.grad = torch.cat([s * (y.t() @ g + wd * a), sb * g.sum(0)[None]])
        return loss

    opt.step(closure)
    z = z.detach()
    return s * z[:-1], sb * z[-1]


def _accuracy(v, y, labels) -> float:
    return 100.0 * ((y @ v[0] + v[1]).argmax(1) == labels).float().mean().item()


def _neg_log_loss(v, y, labels) -> float:
    return -F.cross_entropy(y @ v[0] + v[1], labels).item()


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
                     select: str = "top1", *, path_iter: int | None = 10,
                     patience: int | None = 2) -> tuple[LinearClassifier, dict]:
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

    Speed: each fit on the search path stops after ``path_iter`` L-BFGS iterations (None: to
    convergence; the refit always runs to convergence); with ``patience`` the walk stops once that
    many decades in a row score below the best so far (None: the whole path, since held-out accuracy
    need not be unimodal in the decay). ``reference_fit_linear_probe`` is the plain version.
    """
    if select not in ("top1", "log_loss"):
        raise ValueError(f"select must be 'top1' or 'log_loss', got {select!r}")
    score = _accuracy if select == "top1" else _neg_log_loss
    n_classes = int(train_y.max()) + 1 if n_classes is None else n_classes
    init, val_top1 = None, None
    if weight_decay is None:
        fit, val = _holdout_split(train_y, val_frac, seed)
        if not val.any():  # a tiny training set: nothing to choose the decay on, so the grid's middle one
            weight_decay = sorted(weight_decays)[len(weight_decays) // 2]
            warnings.warn(f"{len(train_y)} training images are too few to hold any out for choosing the probe's "
                          f"weight decay (val_frac {val_frac}): it is {weight_decay:g}, the middle of the grid, and "
                          "the accuracy is that of an untuned probe", stacklevel=2)
    if weight_decay is None:
        basis = _Basis(train_x[fit])  # statistics of the fitting part only: the held-out part stays unseen
        xf, xv, yf, yv = basis(train_x[fit]), basis(train_x[val]), train_y[fit], train_y[val]
        tried = {}  # log10(wd) -> (held-out score, solution)

        def evaluate(log_wd, start):
            v = _fit(xf, yf, n_classes, 10.0**log_wd, basis.lam, init=start, max_iter=path_iter or 200)
            tried[log_wd] = (score(v, xv, yv), v)

        def best():  # ties: the stronger decay
            return max(tried, key=lambda k: (tried[k][0], k))

        # Strong to weak, each solution warm-starting the next
        v, worse = None, 0
        for log_wd in sorted((math.log10(w) for w in weight_decays), reverse=True):
            evaluate(log_wd, v)
            v = tried[log_wd][1]
            worse = worse + 1 if tried[log_wd][0] < tried[best()][0] else 0  # a tie (a plateau) is not worse
            if patience is not None and worse >= patience:
                break
        step = (max(tried) - min(tried)) / max(1, len(tried) - 1)
        for _ in range(refine if len(tried) > 1 else 0):
            step /= 2
            centre = best()
            for log_wd in (centre - step, centre + step):
                if log_wd not in tried:
                    evaluate(log_wd, tried[centre][1])
        log_wd = best()
        v = tried[log_wd][1]
        val_top1, weight_decay, init = _accuracy(v, xv, yv), 10.0**log_wd, v
    else:
        basis = _Basis(train_x)
    a, b = _fit(basis(train_x), train_y, n_classes, weight_decay, basis.lam, init=init)  # refit: to convergence
    weight = basis.U @ a  # (D, C): the basis folded in
    bias = b - basis.center @ weight
    return LinearClassifier(weight.t().contiguous(), bias), {"weight_decay": weight_decay, "val_top1": val_top1}


def reference_fit_linear_probe(train_x, train_y, n_classes: int | None = None, weight_decays=WEIGHT_DECAYS,
                               val_frac: float = 0.2, seed: int = 0, refine: int = 2, select: str = "top1",
                               max_iter: int = 1000) -> tuple[LinearClassifier, dict]:
    """The plain version of ``fit_linear_probe``, the readable reference its fast path is tested against.

    The same protocol and the same search (the decades, then ``refine`` bisections around the best),
    but every weight decay fitted from zero and to convergence, by autograd L-BFGS on the L2-normalised
    features themselves (no change of basis, no warm start, no iteration cap, the whole path walked).
    Slow at weak decays (ill-conditioned): for small problems only.
    """
    n_classes = int(train_y.max()) + 1 if n_classes is None else n_classes

    def solve(x, y, wd):
        x = F.normalize(x.float(), dim=1)
        w = torch.zeros(x.shape[1] + 1, n_classes, requires_grad=True)  # weight (D, C) and bias stacked
        opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-7,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(x @ w[:-1] + w[-1], y) + 0.5 * wd * w[:-1].pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach()

    fit, val = _holdout_split(train_y, val_frac, seed)
    xv, yv = F.normalize(train_x[val].float(), dim=1), train_y[val]
    scores = {}  # log10(wd) -> (held-out score, held-out top-1)

    def evaluate(log_wd):
        w = solve(train_x[fit], train_y[fit], 10.0**log_wd)
        logits = xv @ w[:-1] + w[-1]
        top1 = 100.0 * (logits.argmax(1) == yv).float().mean().item()
        scores[log_wd] = (top1 if select == "top1" else -F.cross_entropy(logits, yv).item(), top1)

    for log_wd in sorted(math.log10(w) for w in weight_decays):
        evaluate(log_wd)
    step = (max(scores) - min(scores)) / max(1, len(scores) - 1)
    for _ in range(refine if len(scores) > 1 else 0):
        step /= 2
        centre = max(scores, key=lambda k: (scores[k][0], k))  # ties: the stronger decay
        for log_wd in (centre - step, centre + step):
            if log_wd not in scores:
                evaluate(log_wd)
    log_wd = max(scores, key=lambda k: (scores[k][0], k))
    w = solve(train_x, train_y, 10.0**log_wd)
    return (LinearClassifier(w[:-1].t().contiguous(), w[-1].clone()),
            {"weight_decay": 10.0**log_wd, "val_top1": scores[log_wd][1]})


def linear_probe(train_x, train_y, test_x, test_y, weight_decays=WEIGHT_DECAYS, val_frac: float = 0.2,
                 seed: int = 0, weight_decay: float | None = None, refine: int = 2, **options) -> dict:
    """Top-1 (%) of a tuned logistic-regression probe (``fit_linear_probe``; ``options``: its keyword-only
    ones), and the chosen weight decay."""
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    probe, info = fit_linear_probe(train_x, train_y, n_classes, weight_decays, val_frac, seed, weight_decay, refine,
                                   **options)
    return {"top1": probe.accuracy(test_x, test_y), **info}
