"""Linear-probe speed: the workbench's tuned probe vs the reference tooling of the t-ReX / CoG protocol.

Reference: scikit-learn multinomial LogisticRegression (L-BFGS, max_iter=1000) on L2-normalised features,
C chosen by 30 Optuna trials (log-uniform C in [1e-4, 1e4]) on a held-out 20% per-class split, then
refit on the full training set. Workbench: ``workbench.probing.linear_probe`` (full-batch L-BFGS in torch,
warm-started along a weight-decay path). Both report top-1 on the same test set.

Features: ``--features path.safetensors`` (keys train_x, train_y, test_x, test_y), or by default a
documented synthetic mixture that behaves like frozen ViT-B features on a 100-class problem:
768-d, non-negative mean offset, class means on a 64-d subspace, anisotropic noise, 10% of the
training labels resampled at random; 10,000 training and 5,000 test samples; about 60% top-1.

    python benchmarks/probe.py [--n-train 10000] [--dim 768] [--classes 100] [--trials 30]
"""
from __future__ import annotations

# first: OpenMP's waiting threads sleep, as in every workbench entry point (workbench/core/threads.py); imported after
# torch, libgomp spins, and beside other jobs the probe's many small parallel regions run several times slower
import workbench  # noqa: F401

# isort: split
import argparse
import time

import numpy as np
import torch

from workbench.probing import linear_probe


def synthetic_features(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0, label_noise: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    basis = torch.randn(dim, 64, generator=gen) / 8
    means = torch.randn(classes, 64, generator=gen) @ basis.t() * 0.17  # class separation: sets the difficulty
    noise_scale = torch.rand(dim, generator=gen) * 1.5 + 0.25  # anisotropic, like real features
    offset = torch.rand(dim, generator=gen)

    def sample(n):
        y = torch.arange(n) % classes
        x = offset + means[y] + torch.randn(n, dim, generator=gen) * noise_scale
        return x, y

    (xtr, ytr), (xte, yte) = sample(n_train), sample(n_test)
    # 10% of training labels resampled at random, like the ambiguous and mislabelled images of real
    # datasets: the best regularisation is then neither the strongest nor the weakest
    noisy = torch.rand(n_train, generator=gen) < label_noise
    ytr = torch.where(noisy, torch.randint(0, classes, (n_train,), generator=gen), ytr)
    return xtr, ytr, xte, yte


def sklearn_reference(xtr, ytr, xte, yte, trials: int, seed: int = 0) -> float:
    import optuna
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import normalize

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    xtr, xte = normalize(xtr.numpy()), normalize(xte.numpy())
    ytr, yte = ytr.numpy(), yte.numpy()
    xa, xv, ya, yv = train_test_split(xtr, ytr, test_size=0.2, stratify=ytr, random_state=seed)

    def fit(c, x, y):
        return LogisticRegression(C=c, solver="lbfgs", max_iter=1000).fit(x, y)

    def objective(trial):
        return fit(trial.suggest_float("C", 1e-4, 1e4, log=True), xa, ya).score(xv, yv)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return 100.0 * fit(study.best_params["C"], xtr, ytr).score(xte, yte)


def blas_kernels() -> str:
    """The BLAS kernels numpy and scipy (the reference) run, as threadpoolctl reports them."""
    try:
        import threadpoolctl
    except ImportError:
        return "BLAS kernel unknown (no threadpoolctl)"
    libs = {f"{i['internal_api']} {i.get('version') or ''} {i.get('architecture') or ''}".strip()
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    return "reference BLAS: " + (", ".join(sorted(libs)) or "none found")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", default=None)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()

    if args.features:
        from safetensors.torch import load_file

        f = load_file(args.features)
        xtr, ytr, xte, yte = f["train_x"].float(), f["train_y"].long(), f["test_x"].float(), f["test_y"].long()
        source = args.features
    else:
        xtr, ytr, xte, yte = synthetic_features(args.n_train, args.n_test, args.dim, args.classes)
        source = "synthetic mixture"
    print(f"features: {source}: {len(xtr)} train / {len(xte)} test, {xtr.shape[1]} dims, "
          f"{int(ytr.max()) + 1} classes; {torch.get_num_threads()} threads")

    t0 = time.perf_counter()
    ours = linear_probe(xtr, ytr, xte, yte)
    t_ours = time.perf_counter() - t0
    print(f"workbench linear_probe   top-1 {ours['top1']:6.2f}%  in {t_ours:7.1f}s  "
          f"(weight decay {ours['weight_decay']:g})")

    t0 = time.perf_counter()
    ref = sklearn_reference(xtr, ytr, xte, yte, args.trials)
    t_ref = time.perf_counter() - t0
    print(f"sklearn L-BFGS + {args.trials} Optuna trials  top-1 {ref:6.2f}%  in {t_ref:7.1f}s")
    print(blas_kernels())
    print(f"speed-up {t_ref / t_ours:.1f}x, top-1 difference {ours['top1'] - ref:+.2f} points "
          f"(workbench {ours['top1']:.2f}, reference {ref:.2f}; targets >= 10x, within 0.5)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
