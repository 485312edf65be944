"""Concept-generalization levels (CoG: Sariyildiz, Kalantidis, Larlus and Alahari, ICCV 2021).

How well does a representation learned on "seen" concepts transfer to unseen ones, as the unseen ones
get semantically further away? CoG ranks candidate unseen concepts by their Lin similarity on WordNet to
the seen set (a candidate is as close as its closest seen concept), then cuts the ranking into levels
of equal size, L1 closest to L5 furthest, and probes every model on each level.

    levels = cog_levels(imagenet1k_wnids(), imagenet21k_wnids())   # the CoG setting
    levels.levels[0][:3], levels.mean_similarity                   # L1 concepts; decreasing per level

Similarity uses the intrinsic information content of the WordNet hierarchy (``workbench.data.wordnet``), so
no text corpus is needed. As in CoG, candidates that subsume a seen concept are dropped (``dog`` would
contain the seen dog breeds), and so are the seen concepts themselves. The ranking is sorted by
similarity, ties broken by wnid, so levels are reproducible; when the candidates do not divide evenly
the least similar remainder (fewer than ``n_levels``) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .imagenet import imagenet1k_wnids, imagenet21k_wnids
from .wordnet import Hierarchy, wordnet


@dataclass
class CogLevels:
    levels: list[list[str]]  # wnids, L1 (closest to the seen set) first, each sorted by decreasing similarity
    similarity: dict[str, float]  # every ranked candidate -> max Lin similarity to the seen set
    nearest_seen: dict[str, str]  # every ranked candidate -> the seen concept reaching that similarity
    dropped: dict[str, list[str]] = field(default_factory=dict)  # why candidates were left out -> wnids

    @property
    def mean_similarity(self) -> list[float]:
        return [float(np.mean([self.similarity[w] for w in level])) for level in self.levels]

    def level_of(self, wnid: str) -> int | None:
        """1-based level of a concept, or None when it is in no level."""
        for k, level in enumerate(self.levels, 1):
            if wnid in level:
                return k
        return None

    def to_dict(self) -> dict:
        return {"levels": self.levels, "mean_similarity": self.mean_similarity,
                "similarity": self.similarity, "nearest_seen": self.nearest_seen,
                "dropped": {k: len(v) for k, v in self.dropped.items()}}


def cog_levels(seen, candidates, n_levels: int = 5, per_level: int | None = None,
               hierarchy: Hierarchy | None = None, exclude_ancestors: bool = True) -> CogLevels:
    """Rank ``candidates`` by Lin similarity to ``seen`` and split them into ``n_levels`` equal levels.

    ``per_level`` (optional) keeps only that many concepts per level, taken evenly along each level's
    stretch of the ranking, for a smaller benchmark that spans the same similarity range.
    """
    wn = hierarchy or wordnet()
    seen = list(dict.fromkeys(seen))
    candidates = list(dict.fromkeys(candidates))
    unknown = [w for w in seen + candidates if w not in wn.index]
    if unknown:
        raise ValueError(f"{len(unknown)} concept(s) are not in the hierarchy, e.g. {unknown[:5]}; "
                         "give WordNet 3.0 noun wnids such as n02085620")
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    seen_set = set(seen)
    dropped = {"seen": [w for w in candidates if w in seen_set]}
    pool = [w for w in candidates if w not in seen_set]
    if exclude_ancestors:
        subsumers = {a for s in seen for a in wn.ancestors(s)}
        dropped["subsumes_a_seen_concept"] = [w for w in pool if w in subsumers]
        pool = [w for w in pool if w not in subsumers]
    if len(pool) < n_levels:
        raise ValueError(f"{len(pool)} candidate concept(s) left after filtering; need at least {n_levels}")
    sim, nearest = wn.similarity_to_set(pool, seen)
    order = sorted(range(len(pool)), key=lambda i: (-sim[i], pool[i]))
    size = len(pool) // n_levels
    ranked = [pool[i] for i in order]
    dropped["remainder"] = ranked[size * n_levels:]
    levels = [ranked[k * size:(k + 1) * size] for k in range(n_levels)]
    if per_level is not None:
        if not 1 <= per_level <= size:
            raise ValueError(f"per_level must be in [1, {size}] for {len(pool)} candidates and {n_levels} levels")
        pick = np.linspace(0, size - 1, per_level).round().astype(int)
        levels = [[level[i] for i in pick] for level in levels]
    kept = {w for level in levels for w in level}
    return CogLevels(levels, {pool[i]: float(sim[i]) for i in order if pool[i] in kept},
                     {pool[i]: nearest[i] for i in order if pool[i] in kept}, dropped)


def imagenet_levels(n_levels: int = 5) -> CogLevels:
    """The CoG setting: ImageNet-1K seen, ImageNet-21K candidates (about 4,000 concepts per level)."""
    return cog_levels(imagenet1k_wnids(), imagenet21k_wnids(), n_levels=n_levels)


def level_table(levels: CogLevels, examples: int = 4, hierarchy: Hierarchy | None = None) -> str:
    """Markdown: per level, size, similarity range and example concepts with their nearest seen concept."""
    wn = hierarchy or wordnet()
    rows = ["| level | concepts | mean Lin similarity | range | examples (nearest seen concept) |",
            "|---|---:|---:|---|---|"]
    for k, level in enumerate(levels.levels, 1):
        sims = [levels.similarity[w] for w in level]
        picks = [level[i] for i in np.linspace(0, len(level) - 1, min(examples, len(level))).round().astype(int)]
        text = ", ".join(f"{wn.name(w)} ({wn.name(levels.nearest_seen[w])})" for w in picks)
        rows.append(f"| L{k} | {len(level)} | {np.mean(sims):.3f} | {min(sims):.3f} - {max(sims):.3f} | {text} |")
    return "\n".join(rows)
