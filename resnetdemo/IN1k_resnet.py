"""Model component of the ResNet demo: image classification with cross-entropy (the seed's IN1k_resnet)."""
from playground.builtins.classification_model import OPTS, Experiment

__all__ = ["Experiment", "OPTS"]
