"""workbench: learn visual representations from large pretrained models, one notebook at a time."""
from .data import Data, load_data
from .distill import DistillConfig, distill, load_student, pick_device
from .teachers import create_teacher, list_teachers

__all__ = ["Data", "DistillConfig", "create_teacher", "distill", "list_teachers", "load_data", "load_student",
           "pick_device"]
__version__ = "0.1.0"
