"""Deep networks at scale: torchvision classifiers trained with any rule, on one GPU or many (``torchrun``).

See ``docs/deep.md`` for the ImageNet reproduction.
"""

from .config import DeepConfig, DeepSimulation, load_deep_simulation, parse_deep_simulation
from .data import ImageData, ResumableSampler, SyntheticImages, load_image_data
from .engine import TrainingInterrupted, build_model, train

__all__ = ["DeepConfig", "DeepSimulation", "load_deep_simulation", "parse_deep_simulation", "ImageData",
           "ResumableSampler", "SyntheticImages", "load_image_data", "TrainingInterrupted", "build_model", "train"]
