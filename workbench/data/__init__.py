"""Data: the offline world, ImageFolders, and what is known about ImageNet's classes.

    data = load_data("world")               # the built-in procedural world (shape and colour tasks)
    data = load_data("/data/in100-sd")      # an ImageFolder: <class>/<image>, or train/ and val/ holding them
    data.loader("train", 64, shuffle=True)  # batches of images in [0, 1] and {task: labels}

``imagenet`` (class names, definitions, hypernyms, subsets), ``wordnet`` (the noun hierarchy and Lin
similarity) and ``cog`` (concept-generalization levels) need no network: their files ship here.
"""
from . import cog, imagenet, wordnet, world
from .datasets import Batch, Data, EpochSampler, InMemorySplit, collate
from .factory import load_data
from .folders import IMAGE_EXTENSIONS, ImageFolderSplit, image_files, skipped_report, to_rgb

__all__ = ["IMAGE_EXTENSIONS", "Batch", "cog", "collate", "Data", "EpochSampler", "image_files", "ImageFolderSplit",
           "imagenet", "InMemorySplit", "load_data", "skipped_report", "to_rgb", "wordnet", "world"]
