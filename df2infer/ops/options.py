"""DecodeOptions: how graph outputs become Detections, held once and validated once.

Every layer that decodes (the Predictor, ops.decode.decode_detections, the GPU postprocessor, the stream
pipeline, the CLI) takes one frozen DecodeOptions instead of threading the options one by one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from df2infer.errors import OptionError
from df2infer.ops.landmarks import LANDMARK_METHODS

# The one default landmark decoding, for every path (CPU decode, GPU kernels, CLI): "subpixel" (argmax on
# the heatmap plus a quadratic refinement), not "torchvision" (Keypoint R-CNN's bicubic upsampling to box
# size). The held-out pin (benchmarks/results/heldout_accuracy.json) is measured with subpixel; torchvision
# scores a little higher (visible-landmark AP 0.427 vs 0.424 on the first 100 held-out images, 0.424 vs
# 0.420 on all 600) at about 7x the CPU postprocessing time (16.9 vs 2.4 ms/image): not enough to move the
# pin. Measurements and commands: docs/design.md, "Decode options".
DEFAULT_LANDMARK_METHOD = "subpixel"

# Cross-category duplicates: the bundled model often reports one garment as two or three similar
# categories (short-sleeved shirt + vest + long-sleeved shirt) with IoU > 0.85. Video, demo and detect
# keep the best-scoring one by default (df2infer.ops.boxes.suppress_overlaps); evaluation keeps all.
DUPLICATE_IOU = 0.85


def _unit(name: str, value: Any, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0.0 < value if open_low else 0.0 <= value) and value <= 1.0
    if not ok:
        rng = "(0, 1]" if open_low else "[0, 1]"
        raise OptionError(f"DecodeOptions: {name}={value!r}, expected a number in {rng}")


@dataclass(frozen=True)
class DecodeOptions:
    """conf            minimum score kept, [0, 1] (the graph already applied contract.score_threshold; a
                       gated-head model also runs its heads only on these)
    masks           paste masks (compact, ops.masks.paste_masks) at mask_threshold, (0, 1]
    landmarks       decode landmarks with landmark_method (one of ops.landmarks.LANDMARK_METHODS)
    embeddings      keep the per-item embeddings
    suppress_iou    class-agnostic suppression of items overlapping a higher-scoring one by IoU > this,
                    (0, 1]; None: off (keep cross-category duplicates)

    Frozen: `replace(**changes)` returns a new, validated one. A bad value raises OptionError (a
    ValueError) naming the option, the value and the allowed range."""

    conf: float = 0.3
    masks: bool = True
    landmarks: bool = True
    embeddings: bool = True
    mask_threshold: float = 0.5
    landmark_method: str = DEFAULT_LANDMARK_METHOD
    suppress_iou: float | None = None

    def __post_init__(self) -> None:
        _unit("conf", self.conf)
        _unit("mask_threshold", self.mask_threshold, open_low=True)
        if self.suppress_iou is not None:
            _unit("suppress_iou", self.suppress_iou, open_low=True)
        if self.landmark_method not in LANDMARK_METHODS:
            raise OptionError(f"DecodeOptions: landmark_method={self.landmark_method!r}, expected one of {LANDMARK_METHODS}")
        for name in ("masks", "landmarks", "embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"DecodeOptions: {name}={getattr(self, name)!r}, expected True or False")

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with `changes` (option names as the fields); an unknown name raises OptionError."""
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise OptionError(f"DecodeOptions: unknown option(s) {unknown}, expected some of {sorted(FIELDS)}")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def of(cls, options: DecodeOptions | None = None, **changes: Any) -> DecodeOptions:
        """`options` (default: DecodeOptions()) with `changes`: the one place keyword options become a DecodeOptions."""
        if options is not None and not isinstance(options, DecodeOptions):
            raise OptionError(f"options={options!r}, expected a DecodeOptions (or keyword options such as conf=0.3)")
        return (options if options is not None else DEFAULT_OPTIONS).replace(**changes)


FIELDS = frozenset(f.name for f in dataclasses.fields(DecodeOptions))
DEFAULT_OPTIONS = DecodeOptions()

__all__ = ["DEFAULT_LANDMARK_METHOD", "DEFAULT_OPTIONS", "DUPLICATE_IOU", "DecodeOptions"]
