"""The options that several stages take, each declared once: its type, bounds, checks and help.

A stage's config makes its field by calling the option, with its own default where it has one:

    @dataclass
    class TransferConfig(Config):
        n_train: int = N_TRAIN(3000)     # type, bound and help as every stage's n_train; the default is 04's

so a new option that several stages take is added here, once; the notebooks' parameters cells show each
option's help as its comment (``tools/sync_parameters.py`` writes them, ``tests/test_options.py`` checks them).
Options that only the two generation configs share are declared beside them, in ``generation.config``.

This module sits between the models and the stages: it reads the checks of ``core``, ``data`` and ``models``.
"""
from __future__ import annotations

from .core.config import Option
from .core.device import pick_device
from .core.loggers import LOGGERS
from .core.precision import PRECISIONS
from .models import check_student_init, check_student_name, check_teacher_names

# ----------------------------------------------------------------------------- where and with what it runs

DEVICE = Option("device", str, '"auto": CUDA when present (under torchrun, the rank\'s own GPU); or cpu, cuda, cuda:1',
                default="auto", check=pick_device, execution=True)
PRECISION = Option("precision", str, "fp32, or bf16 / fp16 (CUDA) autocast for the models' matrix products; auto: "
                                     "bf16 where the device computes it natively and it is faster for this run's "
                                     "models (timed once per machine), else fp32", default="auto",
                   choices=PRECISIONS)
SEED = Option("seed", int, "the seed everything random derives from (weights, data order, sampling); with "
                           "repeats, the first of the seeds", default=0, ge=0)
REPEATS = Option("repeats", int, "seeds seed, seed + 1, ...: each result is a mean and spread over them",
                 default=3, ge=1)

LOGGER = Option("logger", str, "where the run's metric records also go: none; tensorboard (event files in "
                               "<out_dir>/tensorboard); wandb (Weights & Biases, offline unless WANDB_MODE is set). "
                               "Each needs its extra: pip install -e \".[tensorboard]\" or \".[wandb]\"",
                default="none", choices=LOGGERS, execution=True)

# ----------------------------------------------------------------------------- data

DATA = Option("data", str, '"world" (the built-in offline world), or an ImageFolder path (<class>/<image>, or '
                           'train/ + val/)', default="world")
DATA_ROOT = Option("data_root", str, "datasets by name are read from <data_root>/<name> (CoG levels: "
                                     "<data_root>/imagenet21k), in their own published layout", default="data")
N_TRAIN = Option("n_train", int, "offline world only: training images (of each world dataset)", default=6000, ge=8)
N_TEST = Option("n_test", int, "offline world only: test images (of each world dataset)", default=2000, ge=8)
IMAGE_SIZE = Option("image_size", int | None, "image-folder images are decoded to this side in pixels; auto: the "
                                              "model's own (a student's input size; 224 for teachers, which "
                                              "then apply their release's resize and crop)", default=None, ge=8)

# ----------------------------------------------------------------------------- teachers

TEACHERS = Option("teachers", list[str], "registry or timm names, comma-separated or a YAML list",
                  default=["world_colour", "world_shape"], check=check_teacher_names)
TEACHER_WEIGHTS = Option("teacher_weights", dict[str, str], "a release weight file per teacher, in its authors' own "
                                                            "format: name=path,... (DINO, iBOT, DeiT-III, dBOT, UNIC)",
                         default={})
PREPROCESSING = Option("preprocessing", dict[str, str], "a teacher's evaluation recipe instead of its release's: "
                                                        "name=recipe,...", default={})

# ----------------------------------------------------------------------------- students

STUDENT = Option("student", str, "any timm ViT; the wb_ ones are the workbench's, sized for the 32x32 offline world",
                 default="wb_vitc_tiny_patch8_32", check=check_student_name)
STUDENT_INIT = Option("student_init", str, '"random"; "student" (03\'s default student, distilled on first use); a '
                                           'student folder (an out_dir of 03 or its student/); or a released UNIC '
                                           'checkpoint file (unic.pth)', default="random", check=check_student_init)
STUDENT_STEPS = Option("student_steps", int, "training steps of each student", ge=1)
LR = Option("lr", float, "the students' peak learning rate (AdamW)", gt=0)
BATCH_SIZE = Option("batch_size", int, "training images per step (the global batch, whatever the number of "
                                       "processes)", ge=2)
WEIGHT_DECAY = Option("weight_decay", float, "AdamW weight decay of the weight matrices (not of biases, norms, "
                                             "position embedding or tokens)", default=0.05, ge=0)
GRAD_CLIP = Option("grad_clip", float, "gradient norm clipping (0: none)", ge=0)

# ----------------------------------------------------------------------------- dense probes

DENSE_STEPS = Option("dense_steps", int, "training steps of each dense probe, 16 images a step (DINOv2: 40000)",
                     default=1500, ge=1)
DENSE_LR = Option("dense_lr", float, "peak AdamW learning rate of the dense probes (DINOv2: 0.001)", default=0.01,
                  gt=0)

SHARED_OPTIONS = {o.name: o for o in (DEVICE, PRECISION, SEED, REPEATS, LOGGER, DATA, DATA_ROOT, N_TRAIN, N_TEST,
                                      IMAGE_SIZE, TEACHERS, TEACHER_WEIGHTS, PREPROCESSING, STUDENT, STUDENT_INIT,
                                      STUDENT_STEPS, LR, BATCH_SIZE, WEIGHT_DECAY, GRAD_CLIP, DENSE_STEPS, DENSE_LR)}
