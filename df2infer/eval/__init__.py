"""Evaluation on DeepFashion2-format data with stock pycocotools: box, mask and landmark AP
(overall and by scale / occlusion / zoom_in / viewpoint) and consumer-to-shop retrieval top-k."""

from .api import evaluate_predictions, ground_truth_as_results, ground_truth_coco
from .results import KINDS, ResultFormatError, read_results, read_results_dir, validate_results, write_results

__all__ = [
    "evaluate_predictions",
    "ground_truth_as_results",
    "ground_truth_coco",
    "KINDS",
    "ResultFormatError",
    "read_results",
    "read_results_dir",
    "validate_results",
    "write_results",
]
