"""Transfer tasks: what each probes, on which images, with which labels.

**The offline world's suite** (``world_suite``): the 03 student was distilled on the world's training
images (six shapes, six colours, four background styles). Its tasks probe what a representation keeps:
the two factors in-domain and on the two held-out background styles, the joint 36-way shape x colour
task (only a model that keeps both factors can solve it), few-shot shape on held-out backgrounds, and
15 novel shapes no world model was trained on; and two dense tasks from the renderer's own object masks, every
pixel labelled background or the object's shape (``shape_seg``), or its colour (``colour_seg``), probed on patch
tokens. The concept-generalization levels of the world
(``world_levels``) are built by the real CoG builder (``workbench.data.cog``): the 15 novel shapes are
WordNet nouns (trapezoid, hexagon, heart, arrow, house, fish, ...), ranked by Lin similarity to the six
seen shapes' synsets and cut into 5 levels of 3; each level is a 3-way task.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import MissingFile, ParameterError
from ..core.params import as_list
from ..data import NamedDataset, is_named_dataset, named_dataset, world
from ..data.cog import CogLevels, cog_levels
from ..probing import ProbeTask


@dataclass(frozen=True)
class TransferTask:
    name: str
    dataset: str  # a world dataset (WORLD_DATASETS), a named benchmark or CoG level (cog_l3), or an ImageFolder path
    label: str  # which label of the dataset is the target
    shots: int | None = None  # few-shot: training images per class (None: the whole training split)
    description: str = ""
    method: str = "linear"  # the probe: "linear", or a dense one ("segmentation", "depth")
    named: NamedDataset | None = None  # a dataset given by name: where it is read from

    @property
    def probe_task(self) -> ProbeTask:
        return ProbeTask(self.name, self.label, shots=self.shots, method=self.method)

    @property
    def dense(self) -> bool:
        return self.probe_task.dense

    @property
    def protocol(self) -> str:
        return self.probe_task.protocol


WORLD_TASKS = (
    TransferTask("shape", "world", "shape", description="6 shapes, training backgrounds (in-domain)"),
    TransferTask("colour", "world", "colour", description="6 colours, training backgrounds (in-domain)"),
    TransferTask("shape_x_colour", "world", "shape_x_colour",
                 description="36 shape-colour pairs: needs both factors in one feature"),
    TransferTask("shape_new_bg", "world_new_backgrounds", "shape",
                 description="6 shapes on held-out backgrounds (stripes, checker)"),
    TransferTask("colour_new_bg", "world_new_backgrounds", "colour",
                 description="6 colours on held-out backgrounds"),
    TransferTask("shape_new_bg_5shot", "world_new_backgrounds", "shape", shots=5,
                 description="6 shapes on held-out backgrounds, 5 training images per class"),
    TransferTask("novel_shapes", "world_novel_shapes", "shape",
                 description="15 shapes no world model was trained on"),
    TransferTask("shape_seg", "world", "shape_seg", method="segmentation",
                 description="per pixel: background or which of the 6 shapes (the renderer's object masks)"),
    TransferTask("colour_seg", "world", "colour_seg", method="segmentation",
                 description="per pixel: background or which of the 6 colours (the renderer's object masks)"),
)

# The world's shapes as WordNet 3.0 noun synsets: the seen concepts, and the novel (unseen) ones.
WORLD_SHAPE_WNIDS, NOVEL_SHAPE_WNIDS = world.SHAPE_WNIDS, world.NOVEL_SHAPE_WNIDS

WORLD_DATASETS = ("world", "world_new_backgrounds", "world_novel_shapes")


def world_suite(names=None) -> list[TransferTask]:
    """The offline world's tasks (all, or those named)."""
    known = {t.name: t for t in WORLD_TASKS}
    if names is None:
        return list(WORLD_TASKS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ParameterError(f"unknown task(s) {unknown}; known: world, the world's tasks {list(known)}, datasets by "
                             "name (flowers, cars, ..., cog_l1 ... cog_l5, ade20k, voc2012, nyud), or name=path for an "
                             "ImageFolder")
    return [known[n] for n in names]


def parse_tasks(spec, data_root: str | Path | None = "data") -> list[TransferTask]:
    """``world`` (the whole offline suite), world task names, datasets by name (``flowers``, ``cog_l3``,
    ``cog_l3_16shot``, ``ade20k``, ...; ``flowers=/data/flowers102`` reads one from elsewhere than
    ``<data_root>/flowers``) and ``name=path`` ImageFolder tasks. Roots are checked by ``check_roots``."""
    tasks = []
    for item in as_list(spec, "tasks"):
        name, sep, path = (part.strip() for part in item.partition("="))
        if is_named_dataset(name):
            ref = named_dataset(item, data_root)
            method = "linear" if ref.kind == "classification" else ref.kind
            tasks.append(TransferTask(name, ref.dataset, ref.label, ref.shots, ref.description, method, ref))
        elif sep:
            if not Path(path).is_dir():
                raise MissingFile(f"task {name!r}: {path!r} is not a folder (an ImageFolder: <class>/<image>, "
                                  "or train/ and val/ holding them)")
            tasks.append(TransferTask(name, path, "classes", description=f"ImageFolder {path}"))
        elif item == "world":
            tasks += world_suite()
        else:
            tasks += world_suite([item])
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ParameterError(f"task names must be distinct, got {names}")
    roots = {}
    for t in tasks:
        if t.named is not None and roots.setdefault(t.dataset, t.named.root) != t.named.root:
            raise ParameterError(f"tasks read {t.dataset} from two folders, {roots[t.dataset]} and {t.named.root}")
    return tasks


def check_roots(tasks: list[TransferTask]) -> None:
    """Every dataset given by name is where its task says, in its layout (``DatasetNotFound`` names what is not)."""
    for t in tasks:
        if t.named is not None:
            t.named.check()


def world_levels(n_levels: int = 5) -> tuple[CogLevels, list[list[str]]]:
    """CoG levels of the world's novel shapes: WordNet Lin similarity to the six seen shapes."""
    levels = cog_levels(WORLD_SHAPE_WNIDS.values(), NOVEL_SHAPE_WNIDS.values(), n_levels=n_levels)
    by_wnid = {w: s for s, w in NOVEL_SHAPE_WNIDS.items()}
    return levels, [[by_wnid[w] for w in level] for level in levels.levels]


def level_tasks(level_shapes: list[list[str]]) -> list[TransferTask]:
    return [TransferTask(f"L{k}", "world_novel_shapes", f"L{k}",
                         description=f"level {k}: {', '.join(shapes)}") for k, shapes in enumerate(level_shapes, 1)]
