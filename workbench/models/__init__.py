"""Models: teachers (the offline specialists, the zoo of the field, any timm model) and ViT students.

    teacher = create_teacher("world_shape")     # by name, from the registry or timm
    student = load_student("runs/03_distill")   # a distilled student, from its folder
    model = train_classifier(build=lambda: make_classifier(name, "random", 6), labelled=labelled, batch_size=32,
                             steps=100, lr=1e-3, seed=0, device="cpu")   # a student with a head, on a few labels

Importing this package registers every teacher (``zoo``, ``specialists``) in the leaf registry
``_registry``, as timm's model modules register themselves.
"""
from . import specialists, zoo  # noqa: F401  (register the offline-world teachers and the zoo)
from ._factory import build_teachers, check_teacher_names, check_teacher_options, check_teacher_weights, create_teacher
from ._registry import list_teachers, register_named_student, register_teacher
from .classifier import StudentClassifier, make_classifier
from .students import (
    STUDENT_FOLDER,
    TRAINING_CHECKPOINTS,
    Student,
    check_student_init,
    check_student_name,
    check_student_source,
    find_student_folder,
    finished_student_folder,
    load_student,
    student_geometry,
)
from .supervised import CrossEntropy, classifier_precision, train_classifier
from .teachers import FEATURE_KINDS, Features, Teacher, TimmTeacher

__all__ = ["build_teachers", "check_student_init", "check_student_name", "check_teacher_names",
           "check_teacher_options", "check_student_source", "check_teacher_weights", "classifier_precision",
           "create_teacher", "CrossEntropy", "FEATURE_KINDS", "Features", "find_student_folder",
           "finished_student_folder", "list_teachers", "load_student", "make_classifier", "register_named_student",
           "register_teacher", "Student", "STUDENT_FOLDER", "StudentClassifier", "student_geometry", "Teacher",
           "TimmTeacher", "train_classifier", "TRAINING_CHECKPOINTS"]
