"""Results over seeds, summarised the same way everywhere: mean, sample standard deviation, range, each seed."""
from __future__ import annotations

import numpy as np


def seed_stats(values: list[float], digits: int = 2) -> dict:
    """``{mean, std, min, max, per_seed}``; ``std`` is the sample standard deviation (ddof 1), 0 for one seed."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no value to summarise")
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": round(float(np.mean(values)), digits), "std": round(std, digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "per_seed": [round(v, digits) for v in values]}
