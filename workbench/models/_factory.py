"""``create_teacher(name, pretrained=..., checkpoint=...)``: a registered teacher or any timm model, frozen.

Registered names (the offline specialists, the zoo) are looked up in ``_registry``; any other name must
be a timm model, whose weights come from the local Hugging Face cache or a checkpoint file.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
from timm.models import get_pretrained_cfg

from ..core.errors import MissingFile, ParameterError, WeightsError, WorkbenchError, cause
from ._registry import is_registered, list_teachers, teacher_builder
from .preprocess import PREPROCESSING, Preprocessing, preprocessing_named, timm_hub_preprocessing, timm_preprocessing
from .teachers import Teacher, TimmTeacher
from .weights import (
    checkpoint_kind,
    classifier_outputs,
    create_timm_model,
    load_into,
    load_weights,
    peek_weights,
    shapes_only,
)
from .zoo import entries_reading, release_entry


def create_teacher(name: str, pretrained: bool = True, checkpoint: str | None = None,
                   preprocessing: str | Preprocessing | None = None,
                   log: Callable[[str], None] | None = print) -> Teacher:
    """Build a teacher by registry name, or any timm model name; returns it frozen and in eval mode.

    ``checkpoint``: a weight file. A zoo name reads it in its release's own format. ``preprocessing``: a recipe
    name (``workbench.models.preprocess.PREPROCESSING``) or a ``Preprocessing``, instead of the release's (zoo)
    or the timm config's (timm names).

    A file under a timm architecture name is fed as its release evaluates it, never by a guess
    (``timm_checkpoint_plan``): a file whose layout is one release's alone (DINO's or iBOT's training
    checkpoint, DeiT III's, UNIC's: ``weights.checkpoint_kind``), where a zoo entry of that release has this
    architecture, is read and preprocessed as that zoo name (``log`` says which); timm's own files keep timm's
    ``pretrained_cfg``; any other file needs ``preprocessing=``, else a ``ParameterError`` names the choices."""
    if isinstance(preprocessing, str):
        preprocessing = preprocessing_named(preprocessing)
    if is_registered(name):
        options = {"preprocessing": preprocessing} if preprocessing is not None else {}
        teacher = teacher_builder(name)(pretrained=pretrained, checkpoint=checkpoint, **options)
    else:
        check_teacher_names([name])
        if checkpoint is not None:
            if not Path(checkpoint).is_file():
                raise MissingFile(f"checkpoint {str(checkpoint)!r} for {name!r} does not exist")
            weights = load_weights(checkpoint)
            fmt, preprocessing, note = timm_checkpoint_plan(name, weights, checkpoint, preprocessing)
            if note and log is not None:
                log(note)
            model = timm.create_model(name, pretrained=False, num_classes=0)
            load_into(model, weights, fmt, name, checkpoint)
        else:
            model = create_timm_model(name, pretrained)
        teacher = TimmTeacher(name, model, preprocessing)
    teacher.requires_grad_(False)
    return teacher.eval()


def timm_checkpoint_plan(name: str, checkpoint, path, preprocessing: Preprocessing | None = None
                         ) -> tuple[str, Preprocessing | None, str]:
    """How to load a checkpoint (already read, or only its layout: ``peek_weights``) under the timm name ``name``:
    (the format that reads it, its preprocessing (None: timm's ``pretrained_cfg``), a line saying what was
    recognised, or ""). Raises ``ParameterError`` when nothing says how its input must be preprocessed.

    The reader is the one of the release the file's layout identifies, else the first that takes its layout.
    Without ``preprocessing``, in this order:

    1. the layout is one release's alone (``weights.checkpoint_kind``) and a zoo entry of that release has this
       architecture (the timm name's, tag aside): that entry's recipe, e.g. ``dino`` for DINO's training
       checkpoint under ``vit_base_patch16_224``;
    2. timm's own files keep timm's preprocessing, which is theirs: a hub file beside its ``config.json``
       (a Hugging Face cache snapshot of a ``timm/`` repository: that config's ``pretrained_cfg``, the file's own
       tag, whatever tag the name gives), a timm ``train.py`` checkpoint (``state_dict`` beside ``arch``), or a
       bare state dict that is the weights the name's ``pretrained_cfg`` describes, as far as a file can show:
       a classifier of the config's ``num_classes`` (``timm.create_model(name).state_dict()``, a hub file of
       the tag), or none when that config describes headless weights (``vit_base_patch16_224.dino``);
    3. anything else refuses: a headless backbone under a name whose config has a classifier is what DINO, iBOT
       and MAE release (``dino_vitbase16_pretrain.pth``) as well as a headless timm save, and nothing in it says
       which; so are ``state_dict`` alone, ``model`` (DeiT, MAE, dBOT) and a release under another architecture.
    """
    kind = checkpoint_kind(checkpoint)
    fmt = kind.release or (kind.readers[0] if kind.readers else "timm")
    if preprocessing is not None:
        return fmt, preprocessing, ""
    entry = release_entry(kind, name)
    if entry is not None:
        return fmt, preprocessing_named(entry.preprocessing), (
            f"{str(path)!r}: {kind.what}, read and preprocessed as {entry.name!r} ({entry.preprocessing!r} recipe) "
            f"under the timm name {name!r}")
    own = timm_hub_preprocessing(path) if (kind.bare or kind.timm) else None
    if own is not None:
        return fmt, own, f"{str(path)!r}: timm's hub file, preprocessed as its config.json says"
    cfg = _pretrained_cfg(name)
    if kind.timm or (kind.bare and cfg and cfg.get("num_classes") is not None
                     and classifier_outputs(checkpoint, cfg.get("classifier") or "head") == cfg["num_classes"]):
        return fmt, None, ""
    zoo = entries_reading(kind, name)
    arch = name.partition(".")[0]
    why = (f"{kind.what}, but no zoo entry of that release has the architecture {arch!r}" if kind.release else
           f"{kind.what}, which does not say which release made it")
    if cfg:
        p = timm_preprocessing(cfg)
        why += (f"; timm's config for {name!r} describes other weights (its {cfg.get('tag')!r} tag: mean "
                f"{p.mean[0]:g}, resize {p.resize}, crop {p.crop}"
                f"{', a classifier of ' + str(cfg.get('num_classes')) + ' classes' if cfg.get('num_classes') else ''})")
    by_zoo = (f"load it by the zoo name of its release, create_teacher({zoo[0]!r}, checkpoint=...)"
              f"{' (or ' + ', '.join(repr(z) for z in zoo[1:]) + ')' if zoo[1:] else ''}, or " if zoo else "")
    raise ParameterError(
        f"checkpoint {str(path)!r} under the timm architecture name {name!r}: {why}. Its preprocessing (resize, crop, "
        f"mean/std) is not guessed: {by_zoo}give preprocessing=<recipe>, one of {sorted(PREPROCESSING)}, or a "
        f"Preprocessing (in a config: -p preprocessing {name}=<recipe>)")


def _pretrained_cfg(name: str) -> dict:
    """timm's ``pretrained_cfg`` of a model name (its default tag when it names none), without building it."""
    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def check_teacher_names(names: list[str]) -> list[str]:
    """Fail early, listing the known teachers, when a name is neither registered nor a timm model."""
    known = list_teachers()
    bad = [n for n in names if n not in known and not timm.is_model(n)]
    if bad:
        raise ParameterError(f"unknown teacher(s) {bad}. Registered teachers: {', '.join(known)}. "
                             "Any timm model name works too (see timm.list_models()).")
    if len(set(names)) != len(names):
        raise ParameterError(f"teachers must be distinct, got {names}")
    return list(names)


def check_teacher_options(teachers: list[str], weights: dict[str, str], preprocessing: dict[str, str]) -> None:
    """A config's per-teacher ``teacher_weights`` (files that exist) and ``preprocessing`` (known recipes) name
    teachers of the run, and a file under a timm name says how to preprocess its input or has its ``preprocessing``
    (``timm_checkpoint_plan``), checked up front, before a run claims its out_dir.

    That check reads no tensor: it looks at the file's layout (``peek_weights``: a safetensors header, a zip-format
    torch file mapped into memory, not read), so a large checkpoint is still read once, when the teacher is built.
    An old-format (pre-zip) torch file cannot be looked into without reading it whole: it is checked then, by
    ``create_teacher``."""
    for field_name, mapping in (("teacher_weights", weights), ("preprocessing", preprocessing)):
        unknown = sorted(set(mapping) - set(teachers))
        if unknown:
            raise ParameterError(f"{field_name} names {unknown}, which are not among the teachers {teachers}")
    for name, path in weights.items():
        if not Path(path).is_file():
            raise ParameterError(f"teacher_weights: the file of {name!r}, {path!r}, does not exist; give the path of "
                                 "its weights as its release ships them (e.g. checkpoint_teacher.pth)")
    for name, recipe in preprocessing.items():
        if recipe not in PREPROCESSING:
            raise ParameterError(f"preprocessing of {name!r}: unknown recipe {recipe!r}; "
                                 f"known: {sorted(PREPROCESSING)}")
    for name, path in weights.items():
        if name in preprocessing or is_registered(name) or not timm.is_model(name):
            continue
        try:  # names and shapes only: the run reads the file once, when it builds the teacher
            layout = peek_weights(path)
        except ValueError as err:  # not a checkpoint, or a pickle that would run code: refused now, not later
            raise ParameterError(f"teacher_weights: the file of {name!r}: {err}") from None
        if layout is not None:
            timm_checkpoint_plan(name, layout, path)


def check_teacher_weights(weights: dict[str, str], preprocessing: dict[str, str] | None = None) -> None:
    """Each teacher's weight file loaded into its architecture on the ``meta`` device (and each teacher given a
    ``preprocessing`` built with it), before a run claims its out_dir: a file that is cut short, not a checkpoint,
    or another model's weights, or a recipe the teacher does not take, is reported now, naming the teacher and the
    file, not as a library's error once the run has started. The ``meta`` model has shapes and no memory, so this
    costs reading the file (a large one is read again, from the page cache, when the run builds it)."""
    preprocessing = preprocessing or {}
    for name in [*weights, *(n for n in preprocessing if n not in weights)]:
        path = weights.get(name)
        try:
            with shapes_only():
                create_teacher(name, pretrained=path is not None, checkpoint=path,
                               preprocessing=preprocessing.get(name), log=None)
        except ParameterError:
            raise
        except WorkbenchError as err:
            raise WeightsError(f"teacher_weights: the file of {name!r}, {path!r}: {err}") from err
        except Exception as err:  # noqa: BLE001  (torch and timm fail in many ways on a wrong file)
            raise WeightsError(
                f"teacher_weights: the file of {name!r}, {path!r}, does not load into {name!r} "
                f"({cause(err)}). Give that model's weights as its release ships them "
                "(e.g. DINO's checkpoint_teacher.pth), or the teacher name that matches this file.") from err


def build_teachers(names: list[str], weights: dict[str, str] | None = None,
                   preprocessing: dict[str, str | Preprocessing] | None = None, device=None,
                   pretrained: bool = True) -> dict[str, Teacher]:
    """The teachers of a run, by name and in order: each from its release weight file (``weights``: name -> path)
    when given, fed by its ``preprocessing`` recipe when given, frozen, on ``device`` (None: where built).

    The one way every stage (02 to 06) and the command line build their teachers; ``create_teacher`` builds one."""
    weights, preprocessing = weights or {}, preprocessing or {}
    teachers = {}
    for name in names:
        teacher = create_teacher(name, pretrained=pretrained, checkpoint=weights.get(name),
                                 preprocessing=preprocessing.get(name))
        teachers[name] = teacher if device is None else teacher.to(device)
    return teachers
