"""``load_data(name)``: the built-in offline world, or an ImageFolder on disk."""
from __future__ import annotations

from pathlib import Path

from ..core.files import config_hash
from ..core.memory import available_bytes, check_memory
from . import world
from .datasets import Data, InMemorySplit
from .folders import check_image_folder, load_image_folder

# The offline world's memory per image: at most this much at the peak of rendering a split (numpy's float
# intermediates of every image at once), and the uint8 pixels it keeps.
WORLD_RENDER_BYTES = 96 * 1024
WORLD_IMAGE_BYTES = 3 * 32 * 32


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


def check_data(data: str, n_train: int, n_test: int, what: str = "data") -> int:
    """The data a run will read, checked before the run claims its out_dir; returns its number of training images.
    The offline world: its memory at the sizes asked for (``n_train``, ``n_test``); an ImageFolder: that it exists
    and holds a training and a test split (``folders.check_image_folder``, which also warns of a meaningless one)."""
    if data != "world":
        return check_image_folder(Path(data), what)[1]
    need = max(n_train, n_test) * WORLD_RENDER_BYTES + (n_train + n_test) * WORLD_IMAGE_BYTES
    fits = (available_bytes() or 0) // 2 // (WORLD_RENDER_BYTES + 2 * WORLD_IMAGE_BYTES)  # with room to spare
    check_memory(need, f"the offline world of n_train {n_train} and n_test {n_test} images",
                 f"lower them (at most about {fits} each here, e.g. -p n_train {min(6000, fits)})")
    return n_train


def world_fingerprint(n_train: int = 6000, n_test: int = 2000, seed: int = 0) -> str:
    """The fingerprint of ``load_data("world", n_train, n_test, seed=seed)``, without rendering its images."""
    return config_hash({"world": world.config_dict(world.WorldConfig()), "version": world.VERSION,
                        "n": [n_train, n_test], "seed": seed})
