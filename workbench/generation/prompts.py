"""Text prompts for class-conditional generation, after ImageNet-SD (Sariyildiz et al., CVPR 2023).

Each strategy is a template over the class's WordNet metadata:

    name                      c                      "tench"
    name_hypernym             c, h_c                 "tench, cyprinid"
    name_definition           c, d_c                 "tench, freshwater dace-like game fish of Europe and ..."
    name_hypernym_background  c, h_c inside b        "tench, cyprinid inside boathouse"

and any other string containing ``{fields}`` is a user template, e.g. ``"a photo of a {name}, a kind of
{hypernym}"``. Fields: ``name`` (first lemma), ``names`` (all lemmas), ``hypernym`` (direct hypernym),
``definition``, ``background`` (a Places365 scene), ``wnid``. The background is drawn per image from a
seed derived from (seed, wnid, index), so every prompt can be rebuilt from those three numbers.
"""
from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass

from ..data.imagenet import class_info, places365

STRATEGIES = {
    "name": "{name}",
    "name_hypernym": "{name}, {hypernym}",
    "name_definition": "{name}, {definition}",
    "name_hypernym_background": "{name}, {hypernym} inside {background}",
}
FIELDS = ("name", "names", "hypernym", "definition", "background", "wnid")


def stable_seed(*parts) -> int:
    """A 63-bit seed from any parts (same parts, same seed, on every machine and Python version)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class PromptStrategy:
    key: str  # a strategy name, or "template"
    template: str

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}

    def __call__(self, wnid: str, index: int = 0, seed: int = 0) -> str:
        """The prompt of image ``index`` of class ``wnid`` for a run seeded with ``seed``."""
        info = class_info(wnid)
        values = {"name": info.name, "names": ", ".join(info.names), "hypernym": info.hypernym,
                  "definition": info.definition, "wnid": wnid, "background": ""}
        if "background" in self.fields:
            scenes = places365()
            draw = random.Random(stable_seed(seed, "background", wnid, index))
            values["background"] = scenes[draw.randrange(len(scenes))]
        return self.template.format(**values)


def prompt_strategy(spec: str) -> PromptStrategy:
    """A strategy name from ``STRATEGIES``, or a template with ``{fields}``; checked once, here."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"prompt must be one of {list(STRATEGIES)} or a template such as "
                         f"'a photo of a {{name}}', got {spec!r}")
    if spec in STRATEGIES:
        return PromptStrategy(spec, STRATEGIES[spec])
    if "{" not in spec:
        raise ValueError(f"prompt {spec!r} is neither a strategy ({', '.join(STRATEGIES)}) nor a template with "
                         f"fields such as {{name}}; fields: {', '.join(FIELDS)}")
    try:
        parsed = list(string.Formatter().parse(spec))
    except ValueError as err:
        raise ValueError(f"prompt template {spec!r} is malformed ({err}); write fields as {{name}}, "
                         "braces as {{ }}") from None
    for _, field, format_spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS:
            raise ValueError(f"prompt template field {{{field}}} is not allowed; fields: "
                             f"{', '.join('{' + f + '}' for f in FIELDS)}")
        if format_spec or conversion:
            raise ValueError(f"prompt template: write fields plainly as {{{field}}}, without !conversions or :formats")
    return PromptStrategy("template", spec)


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
