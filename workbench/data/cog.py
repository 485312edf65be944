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

**The benchmark itself** comes from a user's ImageNet-21K folder (``cog_selection``): the concepts with enough
images, 1,000 per level, 50 test and at most 1,300 training images each (``CogRules``), written to the cache once
and reused; ``load_cog_level`` reads a level as a ``Data``.

    selection = cog_selection("/data/imagenet21k")   # lists the folder once, then reads the cached selection
    data = load_cog_level(selection, 3)              # ImageNet-CoG L3: 1,000 concepts
"""
from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import DataError, DatasetNotFound
from ..core.files import cache_dir, config_hash, save_bytes
from ..core.progress import progress
from .datasets import Data
from .folders import IMAGE_EXTENSIONS, ImageFolderSplit
from .imagenet import imagenet1k_wnids, imagenet21k_wnids
from .wordnet import Hierarchy, wordnet

WNID = re.compile(r"n\d{8}")


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


# ----------------------------------------------------------------------------- the benchmark from an IN-21K folder

@dataclass(frozen=True)
class CogRules:
    """How CoG turns ImageNet-21K into its five levels (the numbers of the CoG paper and its code, naver/cog)."""

    min_images: int = 782  # a concept needs 732 training images (the fewest of an IN-1K class) + its 50 test ones
    test_images: int = 50  # per concept
    max_train_images: int = 1300  # per concept, the most of an IN-1K class
    per_level: int = 1000  # concepts kept in each level
    n_levels: int = 5
    seed: int = 0  # draws the test images of each concept and the training images kept


COG_SELECTION_VERSION = 1


def _wnid_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and WNID.fullmatch(p.name))


def cog_selection(root, rules: CogRules = CogRules(), log=print) -> dict:
    """The CoG benchmark of an ImageNet-21K folder (``<root>/<wnid>/<image>``), built once and then reused.

    Concepts are the wnid folders that are WordNet nouns, not ImageNet-1K classes nor subsumers of one, with at least
    ``min_images`` images; ``cog_levels`` ranks them by Lin similarity to ImageNet-1K, cuts five equal levels and
    keeps ``per_level`` concepts of each, evenly along its stretch of the ranking. Per concept, ``test_images`` images
    (a seeded draw) are its test set and at most ``max_train_images`` of the others its training set.

    The selection (levels, and per concept its test and training files) is written, gzipped JSON, to
    ``$WORKBENCH_CACHE/cog/``, keyed by the folder, its concept folders (names and modification times) and the rules;
    the next call with the same folder and rules reads it instead of listing 21K folders again.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFound(f"ImageNet-21K: no folder {root}; CoG reads an ImageNet-21K copy with one folder per "
                              "synset (<root>/n01440764/*.JPEG, as image-net.org's full release unpacks)")
    folders = _wnid_folders(root)
    if not folders:
        raise DatasetNotFound(f"ImageNet-21K: {root} holds no wnid folder (n01440764/, ...); CoG reads an "
                              "ImageNet-21K copy with one folder per synset")
    key = {"version": COG_SELECTION_VERSION, "root": str(root.resolve()), "rules": asdict(rules),
           "folders": config_hash({"f": [(p.name, p.stat().st_mtime_ns) for p in folders]})}
    path = cache_dir("cog") / f"selection-{config_hash(key)}.json.gz"
    if path.is_file():
        try:
            selection = json.loads(gzip.decompress(path.read_bytes()))
            if selection.get("key") == key:
                return selection
        except (OSError, ValueError):  # unreadable or cut: rebuilt below
            pass
    log(f"CoG: listing {len(folders)} concept folders of {root} (once; the selection is cached in {path.parent})")
    files = {p.name: [f.name for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS
                      and not f.name.startswith(".")] for p in progress(folders, desc="CoG: concept folders")}
    wn = wordnet()
    enough = [w for w, fs in files.items() if len(fs) >= rules.min_images and w in wn.index]
    dropped = {"not_a_wordnet_noun": sorted(w for w in files if w not in wn.index),
               "fewer_images": sorted(w for w, fs in files.items() if len(fs) < rules.min_images and w in wn.index)}
    try:  # cog_levels drops the ImageNet-1K classes themselves and the concepts that subsume one
        levels = cog_levels(imagenet1k_wnids(), enough, n_levels=rules.n_levels, per_level=rules.per_level,
                            hierarchy=wn)
    except ValueError as err:
        raise DataError(f"CoG: {root} has {len(enough)} concepts with at least {rules.min_images} images; "
                        f"{rules.n_levels} levels of {rules.per_level} need more: {err}") from None
    concepts = {}
    for level in levels.levels:
        for w in level:
            order = sorted(files[w])
            random.Random(f"cog/{rules.seed}/{w}").shuffle(order)
            test = order[: rules.test_images]
            train = order[rules.test_images : rules.test_images + rules.max_train_images]
            concepts[w] = {"test": sorted(test), "train": sorted(train), "images": len(order)}
    dropped.update({k: sorted(v) for k, v in levels.dropped.items()})
    selection = {"key": key, "root": str(root), "rules": asdict(rules), "levels": levels.levels,
                 "mean_similarity": levels.mean_similarity, "similarity": levels.similarity,
                 "nearest_seen": levels.nearest_seen, "dropped": dropped, "concepts": concepts}
    save_bytes(gzip.compress(json.dumps(selection).encode()), path)
    return selection


def load_cog_level(selection: dict, level: int, image_size: int = 224, root=None) -> Data:
    """Level ``level`` (1-based) of a ``cog_selection`` as a ``Data``: its concepts are the classes (label
    ``classes``), their training and test images the two splits; ``root`` (default: the one it was built from)
    where the images are."""
    if not 1 <= level <= len(selection["levels"]):
        raise ValueError(f"CoG has levels 1 to {len(selection['levels'])}, not {level}")
    root = Path(root or selection["root"])
    wnids = sorted(selection["levels"][level - 1])
    splits = {s: [(root / w / f, k) for k, w in enumerate(wnids) for f in selection["concepts"][w][s]]
              for s in ("train", "test")}
    names = tuple(f"{w} {wordnet().name(w)}" for w in wnids)
    fingerprint = config_hash({"cog": selection["key"], "level": level, "root": str(root.resolve()),
                               "size": image_size})
    return Data(f"cog_l{level}", ImageFolderSplit(splits["train"], image_size, "classes"),
                ImageFolderSplit(splits["test"], image_size, "classes"), {"classes": names}, image_size,
                fingerprint)
