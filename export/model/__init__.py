"""Match R-CNN for DeepFashion2 (see match_rcnn.py for the module layout)."""

from .match_rcnn import MEAN, STD, MatchRCNN, build_model

__all__ = ["MatchRCNN", "build_model", "MEAN", "STD"]
