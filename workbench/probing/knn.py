"""The k-NN probe (DINO's protocol): cosine similarity to the training set, the k nearest vote with weight
exp(similarity / T), T = 0.07."""
from __future__ import annotations

import torch
import torch.nn.functional as F

KNN_KS = (10, 20, 100, 200)


@torch.no_grad()
def knn_probe(train_x, train_y, test_x, test_y, ks=KNN_KS, temperature: float = 0.07,
              chunk: int = 1024) -> dict[int, float]:
    """Top-1 (%) of a temperature-weighted cosine k-NN classifier, for each k."""
    xtr, xte = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    kmax = min(max(ks), len(xtr))
    correct = {k: 0 for k in ks}
    for i in range(0, len(xte), chunk):
        sims, idx = (xte[i : i + chunk] @ xtr.t()).topk(kmax, dim=1)
        weights = (sims / temperature).exp()
        one_hot = F.one_hot(train_y[idx], n_classes).float()  # (b, kmax, C)
        for k in ks:
            votes = (one_hot[:, :k] * weights[:, :k, None]).sum(1)
            correct[k] += (votes.argmax(1) == test_y[i : i + chunk]).sum().item()
    return {k: 100.0 * c / len(xte) for k, c in correct.items()}
