"""What a generated clone holds: images per class, the manifest checked against the files, a contact sheet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..core.figures import class_grid
from ..data import world
from ..data.folders import image_files
from ..data.imagenet import metadata
from .prompts import WORLD_CLASSES, is_world, prompt_class, world_class_id
from .writer import read_manifest


def _image_files(out: Path) -> dict[str, list[Path]]:
    return {d.name: image_files(d) for d in sorted(out.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def class_counts(out_dir) -> dict[str, int]:
    """Finished images per class folder."""
    return {w: len(files) for w, files in _image_files(Path(out_dir)).items()}


def counts_table(out_dir, wnids: list[str], limit: int = 20) -> str:
    """Markdown: images on disk for the first ``limit`` classes of ``wnids``."""
    counts = class_counts(out_dir)
    rows = ["| wnid | name | images |", "|---|---|---:|"]
    known = _known_wnids()
    rows += [f"| {w} | {prompt_class(w).name if w in known else ''} | {counts.get(w, 0)} |" for w in wnids[:limit]]
    return "\n".join(rows) + (f"\n\n... and {len(wnids) - limit} more classes" if len(wnids) > limit else "")


def audit(out_dir, decode: bool = True) -> dict:
    """Files against the manifest: images without a record, records without an image, temporary files
    left behind, and (``decode``) images that do not decode: all empty = consistent. Also the images the
    model's safety checker flagged (Stable Diffusion 1.x returns them black): worth regenerating or dropping."""
    out = Path(out_dir)
    files = {f"{w}/{p.name}" for w, ps in _image_files(out).items() for p in ps}
    records = read_manifest(out)
    recorded = {r["file"] for r in records}
    broken = []
    if decode:
        for f in sorted(files):
            try:
                with Image.open(out / f) as im:
                    im.load()
            except (OSError, ValueError):
                broken.append(f)
    return {
        "images": len(files),
        "records": len(records),
        "unrecorded": sorted(files - recorded),
        "missing": sorted(recorded - files),
        "temporary": sorted(str(p.relative_to(out)) for p in out.glob("*/.*.tmp")),
        "unreadable": broken,
        "nsfw_flagged": [r["file"] for r in records if r.get("nsfw")],
    }


def contact_sheet(out_dir, wnids: list[str] | None = None, per_class: int = 8, max_classes: int = 16):
    """A grid with one row per class (its first ``per_class`` images), labelled ``wnid name``; for world classes
    one row per shape, its colours side by side (``per_class // 4`` images of each: 2 by default)."""
    found = _image_files(Path(out_dir))
    if is_world(wnids or list(found)):
        return _world_sheet(found, wnids or list(found), max(1, per_class // 4))
    wnids = [w for w in (wnids or list(found)) if found.get(w)][:max_classes]
    rows = {}
    for w in wnids:
        rows[_label(w)] = [np.asarray(Image.open(p).convert("RGB")) for p in found[w][:per_class]]
    return class_grid(rows, max([len(r) for r in rows.values()], default=1))


def _world_sheet(found: dict[str, list[Path]], classes: list[str], per_colour: int):
    """One row per shape; in it, colour after colour (red, yellow, green, cyan, blue, magenta), the first
    ``per_colour`` images of each class."""
    rows = {}
    for shape in world.SHAPES:
        ids = [world_class_id(shape, c) for c in world.COLOURS if world_class_id(shape, c) in classes]
        images = [np.asarray(Image.open(p).convert("RGB")) for w in ids for p in found.get(w, [])[:per_colour]]
        if images:
            rows[shape] = images
    return class_grid(rows, max([len(r) for r in rows.values()], default=1))


def _label(class_id: str) -> str:
    """``wnid`` + name for ImageNet classes, the name alone for world classes ("red circle"), the folder otherwise."""
    if class_id in WORLD_CLASSES:
        return prompt_class(class_id).name
    return f"{class_id}\n{prompt_class(class_id).name}" if class_id in _known_wnids() else class_id


def _known_wnids() -> set[str]:
    return set(metadata()["classes"]) | set(WORLD_CLASSES)
