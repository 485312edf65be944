"""Probes on frozen features: linear (t-ReX / CoG protocol), k-NN and few-shot, with a feature cache.

    rows = probe([Encoder(name, encode, module), ...], data, device)   # the one entry point
    probe_table(rows)                                                  # {model: {task: top-1}}

Dense probes (``dense``: segmentation, depth) read the patch tokens of ``Encoder.features`` through the same entry
point, for the tasks whose labels are maps (``ProbeTask(name, method="segmentation")``).

``fit_linear_probe`` is the probe itself, fitted once and kept as a module (a probed teacher).
"""
from . import dense, report
from .config import TEACHER_INPUT, ProbeConfig
from .dense import DenseProtocol, dense_probe
from .features import (
           Encoder,
           FeatureSet,
           cached_features,
           encode_images,
           extract_features,
           model_fingerprint,
           split_features,
)
from .few_shot import FEW_SHOT_SEEDS, FEW_SHOT_WEIGHT_DECAY, few_shot_indices, few_shot_probe
from .knn import KNN_KS, knn_probe
from .linear import WEIGHT_DECAYS, LinearClassifier, fit_linear_probe, linear_probe
from .runner import ROW_FIELDS, ProbeTask, few_shot_table, probe, probe_table, probe_task, write_rows

__all__ = ["TEACHER_INPUT", "dense", "dense_probe", "DenseProtocol", "FEW_SHOT_SEEDS", "FEW_SHOT_WEIGHT_DECAY",
           "KNN_KS", "ROW_FIELDS", "WEIGHT_DECAYS", "cached_features",
           "encode_images", "Encoder", "extract_features", "FeatureSet", "few_shot_indices", "few_shot_probe",
           "few_shot_table", "fit_linear_probe", "knn_probe", "linear_probe", "LinearClassifier", "model_fingerprint",
           "probe", "probe_table", "probe_task", "ProbeConfig", "ProbeTask", "report", "split_features", "write_rows"]
