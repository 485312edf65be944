"""Text prompts for class-conditional generation, after ImageNet-SD (Sariyildiz et al., CVPR 2023).

Each strategy is a template over the class's WordNet metadata (an ImageNet class, a world class):

  name                      c                "tench"                            "red circle"
  name_hypernym             c, h_c           "tench, cyprinid"                  "red circle, ellipse"
  name_definition           c, d_c           "tench, freshwater dace-..."       "red circle, ellipse in which ..."
  name_hypernym_background  c, h_c inside b  "tench, cyprinid inside boathouse" "red circle, ellipse inside grey blobs"

and any other string containing ``{fields}`` is a user template, e.g. ``"a photo of a {name}, a kind of
{hypernym}"``. Fields: ``name`` (first lemma), ``names`` (all lemmas), ``hypernym`` (direct hypernym),
``definition``, ``background`` (a scene), ``wnid`` (the class). The background is drawn per image from a
seed derived from (seed, class, index), so every prompt can be rebuilt from those three numbers.

Classes are ImageNet-1K wnids (backgrounds: the 365 Places365 scenes) or the offline world's 36 classes, a
colour and a shape such as ``red_circle`` (``world``: all of them). A world shape is a WordNet noun
(``workbench.data.world.SHAPE_WNIDS``), so its prompts carry its WordNet hypernym and definition the way
ImageNet's do; its backgrounds are the world's training backgrounds (the held-out ones stay unseen).
"""
from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from ..core.errors import ParameterError
from ..core.params import as_list
from ..data import imagenet, world
from ..data.imagenet import class_info, places365

STRATEGIES = {
    "name": "{name}",
    "name_hypernym": "{name}, {hypernym}",
    "name_definition": "{name}, {definition}",
    "name_hypernym_background": "{name}, {hypernym} inside {background}",
}
FIELDS = ("name", "names", "hypernym", "definition", "background", "wnid")
WORLD = "world"  # the classes argument that names all the world's classes
# How a prompt names each background style of the world (they are all low-saturation greys).
BACKGROUND_PHRASES = {"flat": "flat grey", "gradient": "grey gradient", "noise": "grey noise", "blobs": "grey blobs",
                      "stripes": "grey stripes", "checker": "grey checkerboard"}
assert set(BACKGROUND_PHRASES) == set(world.BACKGROUNDS)


def stable_seed(*parts) -> int:
    """A 63-bit seed from any parts (same parts, same seed, on every machine and Python version)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class PromptClass:
    """What a prompt may say about one class: its WordNet names, hypernym and definition, and its scenes."""

    id: str  # the class folder: a wnid, or a world class such as "red_circle"
    names: tuple[str, ...]  # the usual name first
    hypernym: str  # the direct hypernym's name
    definition: str
    backgrounds: tuple[str, ...]  # what {background} is drawn from

    @property
    def name(self) -> str:
        return self.names[0]


def world_class_id(shape: str, colour: str) -> str:
    return f"{colour}_{shape}"


# The world's classes, shape by shape: "red_circle", "yellow_circle", ..., "magenta_ring".
WORLD_CLASSES = tuple(world_class_id(sh, c) for sh in world.SHAPES for c in world.COLOURS)


def world_factors(class_id: str) -> tuple[str, str]:
    """``(shape, colour)`` of a world class."""
    if class_id not in WORLD_CLASSES:
        raise KeyError(f"{class_id!r} is not a world class; they are colour_shape, e.g. {WORLD_CLASSES[0]!r}")
    colour, shape = class_id.split("_", 1)
    return shape, colour


@lru_cache(maxsize=1)
def world_shapes() -> dict[str, dict]:
    """The world's shapes as WordNet describes them (``data/assets/world_shapes.json``, written by
    tools/make_imagenet_metadata.py)."""
    text = resources.files("workbench.data").joinpath("assets", "world_shapes.json").read_text(encoding="utf-8")
    return json.loads(text)["shapes"]


@cache
def prompt_class(class_id: str) -> PromptClass:
    """An ImageNet-1K wnid or a world class, as the prompts see it."""
    if class_id in WORLD_CLASSES:
        shape, colour = world_factors(class_id)
        info = world_shapes()[shape]
        lemmas = [shape] + [n for n in info["names"] if n != shape]  # the world's own word first
        return PromptClass(class_id, tuple(f"{colour} {n}" for n in lemmas), info["hypernym_names"][0],
                           info["definition"], tuple(BACKGROUND_PHRASES[b] for b in world.TRAIN_BACKGROUNDS))
    info = class_info(class_id)
    return PromptClass(class_id, info.names, info.hypernym, info.definition, places365())


def is_world(classes: list[str]) -> bool:
    return bool(classes) and all(c in WORLD_CLASSES for c in classes)


def resolve_classes(classes) -> list[str]:
    """``world`` (its 36 classes), world classes (``red_circle,blue_ring``), or ImageNet classes
    (``imagenet100``, ``imagenet1k``, wnids, a .txt file: ``workbench.data.imagenet.resolve_classes``)."""
    if isinstance(classes, str) and classes.strip() == WORLD:
        return list(WORLD_CLASSES)
    items = None if isinstance(classes, (str, Path)) and Path(classes).suffix == ".txt" else as_list(classes, "classes")
    if items is None or not any(c in WORLD_CLASSES for c in items):
        try:
            return imagenet.resolve_classes(classes)
        except ParameterError as err:  # the offline world's model draws only the world's classes: say them too
            raise ParameterError(f"{err}. With the offline world's model (--model world): 'world' (its "
                                 f"{len(WORLD_CLASSES)} classes) or some of them, colour_shape such as "
                                 f"{','.join(WORLD_CLASSES[:2])}") from None
    if not is_world(items):
        raise ParameterError(f"classes: {[c for c in items if c not in WORLD_CLASSES][:5]} are not world classes; give "
                             f"'world', world classes (colour_shape: {', '.join(WORLD_CLASSES[:3])}, ...) or ImageNet "
                             "wnids, not both")
    duplicates = sorted({c for c in items if items.count(c) > 1})
    if duplicates:
        raise ParameterError(f"classes: {duplicates[:5]} appear more than once")
    return items


@dataclass(frozen=True)
class PromptStrategy:
    key: str  # a strategy name, or "template"
    template: str

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}

    def __call__(self, wnid: str, index: int = 0, seed: int = 0) -> str:
        """The prompt of image ``index`` of class ``wnid`` (or a world class) for a run seeded with ``seed``."""
        info = prompt_class(wnid)
        background = ""
        if "background" in self.fields:
            draw = random.Random(stable_seed(seed, "background", wnid, index))
            background = info.backgrounds[draw.randrange(len(info.backgrounds))]
        return self.fill(info, background)

    def fill(self, info: PromptClass, background: str = "") -> str:
        """The prompt of class ``info`` with a given background."""
        return self.template.format(name=info.name, names=", ".join(info.names), hypernym=info.hypernym,
                                    definition=info.definition, wnid=info.id, background=background)


def prompt_strategy(spec: str) -> PromptStrategy:
    """A strategy name from ``STRATEGIES``, or a template with ``{fields}``; checked once, here."""
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"prompt must be one of {list(STRATEGIES)} or a template such as "
                             f"'a photo of a {{name}}', got {spec!r}")
    if spec in STRATEGIES:
        return PromptStrategy(spec, STRATEGIES[spec])
    if "{" not in spec:
        raise ParameterError(f"prompt {spec!r} is neither a strategy ({', '.join(STRATEGIES)}) nor a template with "
                             f"fields such as {{name}}; fields: {', '.join(FIELDS)}")
    try:
        parsed = list(string.Formatter().parse(spec))
    except ValueError as err:
        raise ParameterError(f"prompt template {spec!r} is malformed ({err}); write fields as {{name}}, "
                             "braces as {{ }}") from None
    for _, field, format_spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS:
            raise ParameterError(f"prompt template field {{{field}}} is not allowed; fields: "
                                 f"{', '.join('{' + f + '}' for f in FIELDS)}")
        if format_spec or conversion:
            raise ParameterError(f"prompt template: write fields plainly as {{{field}}}, without !conversions or "
                                 ":formats")
    return PromptStrategy("template", spec)


def class_table(classes: list[str], limit: int = 12) -> str:
    """Markdown: the first ``limit`` ImageNet classes (``workbench.data.imagenet.class_table``), or the world's
    shapes as WordNet describes them, with the colours and backgrounds the prompts combine them with."""
    if not is_world(classes):
        return imagenet.class_table(classes, limit)
    factors = [world_factors(c) for c in classes]
    rows = ["| shape | wnid | names (WordNet lemmas) | hypernym | definition | colours |", "|---|---|---|---|---|---|"]
    for shape in dict.fromkeys(s for s, _ in factors):
        info = world_shapes()[shape]
        rows.append(f"| {shape} | {info['wnid']} | {', '.join(info['names'])} | {info['hypernym_names'][0]} | "
                    f"{info['definition']} | {', '.join(c for s, c in factors if s == shape)} |")
    return "\n".join(rows) + f"\n\nbackgrounds: {', '.join(prompt_class(classes[0]).backgrounds)}"


def strategy_table(chosen: str, wnid: str, per_class: int = 3, seed: int = 0) -> str:
    """Markdown: the first prompts of class ``wnid`` under every strategy (and the ``chosen`` template), the chosen
    one marked."""
    specs = list(STRATEGIES) + ([chosen] if chosen not in STRATEGIES else [])
    rows = ["| strategy | example prompts |", "|---|---|"]
    for spec in specs:
        mark = " **(chosen)**" if spec == chosen else ""
        rows.append(f"| `{spec}`{mark} | " + "<br>".join(example_prompts(spec, [wnid], per_class, seed)[wnid]) + " |")
    return "\n".join(rows)


def example_prompts(spec: str, wnids: list[str], per_class: int = 2, seed: int = 0) -> dict[str, list[str]]:
    """The first ``per_class`` prompts of each class, exactly as generation will use them."""
    strategy = prompt_strategy(spec)
    return {w: [strategy(w, i, seed) for i in range(per_class)] for w in wnids}
