"""The contract between export/ and the runtime: the deploy graph's inputs, outputs and metadata.

Written down once, here, versioned. The exporter embeds `Contract.to_json()` in every artifact
(ONNX `metadata_props` under METADATA_KEY; a sidecar `<engine>.json` next to TensorRT engines) and
the runtime refuses an artifact whose schema or version it does not understand, naming both.

Graph input
  images            float32 [B, 3, H, W]  RGB, values 0..255, letterboxed (see df2infer.ops.letterbox);
                    mean/std normalization happens inside the graph. B is dynamic; H, W fixed.
Second graph input, in artifacts with gated_heads = true (the CPU default)
  min_head_score    float32 [1]            a real graph input (files exported before had it as an
                    overridable initializer with default 0.0; those still load). Backends always
                    feed it (the Predictor's `conf`; 0.0 = every detection). The mask,
                    landmark and matching heads run only on the first K detection rows, K = the
                    largest number of detections with score >= min_head_score in any image of the
                    batch (at least 1); output rows >= K have zero masks, heatmaps and embeddings
                    (boxes, scores, labels and num_dets are unaffected). The runtime feeds its
                    `conf`, so heads are not computed for detections it would drop. A runtime
                    length, which TensorRT does not build: engines come from static-head graphs.
Graph outputs (N = max_detections, padded; rows >= num_dets are zeros)
  num_dets          int32   [B]            valid detections per image
  boxes             float32 [B, N, 4]      x1, y1, x2, y2 in input (letterboxed) pixels
  scores            float32 [B, N]         descending within each image
  labels            int32   [B, N]         category id 1..13 (0 for padding)
  masks             float32 [B, N, M, M]   mask probability of the predicted class, box-relative
  landmark_heatmaps float32 [B, N, 39, K, K] heatmap logits of the predicted class's landmarks,
                                           box-relative; channels >= the category's count are padding
  embeddings        float32 [B, N, D]      matching-network embedding per detection
The similarity network ((a - b)^2 -> fc -> softmax) is carried as weights in the metadata so the
runtime can score pairs and whole galleries without the graph.

Heads. `heads` lists the per-detection outputs the model really has, of HEADS ("masks",
"landmarks", "embeddings"). A model imported from a checkpoint without a mask, keypoint or matching
head (a torchvision Keypoint R-CNN has no mask head; no torchvision or detectron2 model has a
matching network) lacks some: the graph still has every output above so the backends stay the
same, but a missing head's output is all zeros with its sizes 1 (mask_size = 1; max_landmarks =
heatmap_size = 1; embedding_dim = 1 and no similarity weights), the runtime never reads it, and
Detections carry None for it.
Provenance. `family` says whose checkpoint the weights came from (df2infer, torchvision,
detectron2) and `input_convention` how the graph turns its RGB 0..255 input into what that network
was trained on (channel order, mean/std); the input itself is the same for every family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from df2infer.errors import ModelError

SCHEMA = "df2infer.match_rcnn"
SCHEMA_VERSION = 1
METADATA_KEY = "df2infer.contract"

INPUT_NAME = "images"
HEAD_SCORE_INPUT = "min_head_score"
OUTPUT_NAMES = ("num_dets", "boxes", "scores", "labels", "masks", "landmark_heatmaps", "embeddings")
PRECISIONS = ("fp32", "fp16", "int8")
HEADS = ("masks", "landmarks", "embeddings")
FAMILIES = ("df2infer", "torchvision", "detectron2")
# how masks are pasted into the image: grid_sample (detectron2's rule, this project's own models) or
# torchvision (its paste_masks_in_image, for masks trained against torchvision's targets); df2infer.ops.masks
MASK_PASTES = ("grid_sample", "torchvision")
# The letterbox fill (per channel, 0..255) of every df2infer model: training, export and runtime use this one value.
PAD_VALUE = 114.0


class ContractError(ModelError, ValueError):
    """An artifact whose contract is missing, of another schema or version, or inconsistent."""


@dataclass
class Contract:
    input_height: int
    input_width: int
    max_detections: int
    mask_size: int = 28
    heatmap_size: int = 56
    max_landmarks: int = 39
    embedding_dim: int = 256
    num_classes: int = 13
    precision: str = "fp32"
    max_batch: int = 8  # largest batch the artifact is built/tested for (TensorRT profile max)
    pad_value: float = PAD_VALUE  # letterbox fill, per channel, in 0..255
    score_threshold: float = 0.05  # already applied in the graph; the runtime's `conf` filters further
    nms_iou: float = 0.5
    gated_heads: bool = False  # heads only on rows with score >= the min_head_score input (see above)
    similarity_weight: list[list[float]] = field(default_factory=list)  # [2, D]
    similarity_bias: list[float] = field(default_factory=list)  # [2]
    model: dict[str, Any] = field(default_factory=dict)  # name, backbone, trained_on, checkpoint sha256, ...
    heads: list[str] = field(default_factory=lambda: list(HEADS))  # the per-detection outputs the model has
    family: str = "df2infer"  # whose checkpoint the weights came from
    input_convention: str = "RGB 0..255 in; (x - ImageNet mean) / ImageNet std inside the graph"
    mask_paste: str = "grid_sample"  # one of MASK_PASTES
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION

    def output_shapes(self, batch: int | str = "B") -> dict[str, tuple]:
        n, m, k = self.max_detections, self.mask_size, self.heatmap_size
        return {
            "num_dets": (batch,),
            "boxes": (batch, n, 4),
            "scores": (batch, n),
            "labels": (batch, n),
            "masks": (batch, n, m, m),
            "landmark_heatmaps": (batch, n, self.max_landmarks, k, k),
            "embeddings": (batch, n, self.embedding_dim),
        }

    def has(self, head: str) -> bool:
        """Whether the model has `head` (one of HEADS)."""
        if head not in HEADS:
            raise ValueError(f"head {head!r}: expected one of {HEADS}")
        return head in self.heads

    def missing_head_reason(self, head: str) -> str:
        """Why a model lacks `head`, for messages."""
        what = {"masks": "mask head", "landmarks": "keypoint (landmark) head", "embeddings": "matching network"}[head]
        return f"this model ({self.family} checkpoint {self.model.get('checkpoint') or self.model.get('name')!r}) has no {what}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, source: str = "<artifact>") -> Contract:
        """The contract stored in an artifact's metadata (ONNX metadata_props as a dict); a
        ContractError naming `source` when there is none."""
        if METADATA_KEY not in metadata:
            raise ContractError(
                f"{source}: no df2infer contract in the metadata (key {METADATA_KEY!r}); "
                "this file was not exported by df2infer's exporter, or the metadata was stripped"
            )
        return cls.from_json(metadata[METADATA_KEY], source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<artifact>") -> Contract:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ContractError(f"{source}: contract metadata is not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ContractError(f"{source}: contract metadata is a {type(raw).__name__}, expected an object")
        if raw.get("schema") != SCHEMA:
            raise ContractError(f"{source}: contract schema {raw.get('schema')!r}, this runtime reads {SCHEMA!r}")
        if raw.get("version") != SCHEMA_VERSION:
            raise ContractError(
                f"{source}: contract version {raw.get('version')!r}, this runtime reads version {SCHEMA_VERSION}; "
                "re-export the model with a matching df2infer"
            )
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ContractError(f"{source}: contract has unknown fields {sorted(unknown)}")
        try:
            c = cls(**raw)
        except TypeError as e:
            raise ContractError(f"{source}: contract is missing fields ({e})") from None
        c.check(source)
        return c

    def check(self, source: str = "<artifact>") -> None:
        if self.precision not in PRECISIONS:
            raise ContractError(f"{source}: precision {self.precision!r}, expected one of {PRECISIONS}")
        for name in ("input_height", "input_width", "max_detections", "mask_size", "heatmap_size", "embedding_dim", "max_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ContractError(f"{source}: {name} = {v!r}, expected a positive int")
        bad = [h for h in self.heads if h not in HEADS] if isinstance(self.heads, list) else [self.heads]
        if bad:
            raise ContractError(f"{source}: heads {self.heads!r}: unknown {bad}, expected a subset of {list(HEADS)}")
        if self.mask_paste not in MASK_PASTES:
            raise ContractError(f"{source}: mask_paste {self.mask_paste!r}, expected one of {MASK_PASTES}")
        if self.family not in FAMILIES:
            raise ContractError(f"{source}: family {self.family!r}, expected one of {FAMILIES}")
        if "embeddings" not in self.heads and (self.similarity_weight or self.similarity_bias):
            raise ContractError(f"{source}: similarity weights without an embeddings head (heads {self.heads})")
        if not isinstance(self.gated_heads, bool):
            raise ContractError(f"{source}: gated_heads = {self.gated_heads!r}, expected true or false")
        if self.similarity_weight and (
            len(self.similarity_weight) != 2 or any(len(r) != self.embedding_dim for r in self.similarity_weight)
        ):
            raise ContractError(f"{source}: similarity_weight must be [2, {self.embedding_dim}]")
        if self.similarity_bias and len(self.similarity_bias) != 2:
            raise ContractError(f"{source}: similarity_bias must have 2 values")
