"""``load_data(name)``: the built-in offline world, or an ImageFolder on disk."""
from __future__ import annotations

from pathlib import Path

from ..core.files import config_hash
from . import world
from .datasets import Data, InMemorySplit
from .folders import load_image_folder


def load_data(data: str = "world", n_train: int = 6000, n_test: int = 2000, image_size: int = 224,
              seed: int = 0) -> Data:
    """``"world"`` for the offline world, or the path of an ImageFolder."""
    if data == "world":
        cfg = world.WorldConfig()
        tr = world.make_split(cfg, n_train, seed=20_000 + seed)
        te = world.make_split(cfg, n_test, seed=30_000 + seed)
        tasks = {t: tr.classes[t] for t in ("shape", "colour")}
        keep = lambda s: {t: s.labels[t] for t in tasks}  # noqa: E731
        return Data("world", InMemorySplit(tr.images, keep(tr)), InMemorySplit(te.images, keep(te)), tasks,
                    cfg.image_size, world_fingerprint(n_train, n_test, seed))
    return load_image_folder(Path(data), image_size, seed)


def world_fingerprint(n_train: int = 6000, n_test: int = 2000, seed: int = 0) -> str:
    """The fingerprint of ``load_data("world", n_train, n_test, seed=seed)``, without rendering its images."""
    return config_hash({"world": world.config_dict(world.WorldConfig()), "version": world.VERSION,
                        "n": [n_train, n_test], "seed": seed})
