"""workbench: learn visual representations from large pretrained models, one notebook at a time.

    import workbench as wb
    cfg, out = wb.DistillConfig.from_notebook(globals())   # a notebook's parameters, checked; its out_dir claimed
    data = wb.load_data("world")
    teachers = wb.build_teachers(cfg.teachers, cfg.teacher_weights, cfg.preprocessing)
    run = wb.distill(cfg, data, teachers, out_dir=out)

The package is layered; each layer imports only the ones before it (``tests/test_imports.py``):

    core                                   files, configs, output folders, checkpoints, device, processes, plots
    data, layers, models                   datasets; building blocks; teachers and students
    options                                the options several stages take, each declared once
    probing                                frozen-feature probes (02)
    generation, distillation, transfer     the stages (01 and 06, 03 and 05, 04), which never import each other
    study                                  sweeps over settings and seeds, and their tables (07)
"""
from .core.threads import share_cores

share_cores()  # before the imports below load torch: libgomp reads OMP_WAIT_POLICY once, as it loads (core/threads.py)

from . import core, data, distillation, generation, layers, models, options, probing, transfer
from .core.threads import install_core_share

install_core_share()  # processes that train at the same time split the cores (core/threads.py)

from .core.device import pick_device
from .core.errors import WorkbenchError
from .core.figures import save_figure, show
from .core.files import save_json
from .core.live import LivePlot
from .core.runs import prepare_out_dir
from .data import Data, load_data
from .distillation import DistillConfig, default_student, distill
from .distillation.task import TaskDistillConfig, task_distill
from .generation import CloneStudyConfig, GenerateConfig, generate
from .models import build_teachers, create_teacher, list_teachers, load_student
from .probing import Encoder, ProbeConfig, ProbeTask, probe, probe_table
from .transfer import TransferConfig

__all__ = ["build_teachers", "CloneStudyConfig", "core", "create_teacher", "Data", "data", "default_student", "distill",
           "distillation", "DistillConfig", "Encoder", "generate", "GenerateConfig", "generation", "layers",
           "list_teachers", "LivePlot", "load_data", "load_student", "models", "options", "pick_device",
           "prepare_out_dir", "probe", "probe_table", "ProbeConfig", "ProbeTask", "probing", "save_figure", "save_json",
           "show", "task_distill", "TaskDistillConfig", "transfer", "TransferConfig", "WorkbenchError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``wb.study``, ``wb.sweep`` and ``wb.StudyConfig`` load on first use: studies need pandas and submitit,
    which every notebook's ``import workbench`` would otherwise pay for (about half a second)."""
    if name in ("study", "sweep", "StudyConfig"):
        import importlib

        study = importlib.import_module(".study", __name__)
        return study if name == "study" else getattr(study, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
