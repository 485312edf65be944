"""Data: the offline world, ImageFolders, the field's benchmarks by name, and what is known about ImageNet's classes.

    data = load_data("world")               # the built-in procedural world (shape and colour tasks)
    data = load_data("/data/in100-sd")      # an ImageFolder: <class>/<image>, or train/ and val/ holding them
    data = named_dataset("flowers", data_root="/data").load()   # a benchmark in its own layout (or cog_l3, ade20k)
    data.loader("train", 64, shuffle=True)  # batches of images in [0, 1] and {task: labels}
    Labelled(pixels, labels, indices).batches(32, gen)   # a few labelled images in memory, endless batches

``imagenet`` (class names, definitions, hypernyms, subsets), ``wordnet`` (the noun hierarchy and Lin
similarity) and ``cog`` (concept-generalization levels) need no network: their files ship here.
"""
from . import benchmarks, cog, dense, imagenet, wordnet, world
from .benchmarks import BENCHMARKS, DatasetNotFound, NamedDataset, is_named_dataset, load_benchmark, named_dataset
from .datasets import Batch, Data, EpochSampler, InMemorySplit, collate
from .factory import load_data, world_fingerprint
from .folders import IMAGE_EXTENSIONS, ImageFolderSplit, image_files, skipped_report, to_rgb
from .labelled import Labelled

__all__ = ["BENCHMARKS", "IMAGE_EXTENSIONS", "Batch", "benchmarks", "cog", "collate", "Data", "DatasetNotFound",
           "dense", "EpochSampler", "image_files", "ImageFolderSplit", "imagenet", "InMemorySplit", "is_named_dataset",
           "Labelled", "load_benchmark", "load_data", "named_dataset", "NamedDataset", "skipped_report", "to_rgb",
           "wordnet", "world", "world_fingerprint"]
