"""Match R-CNN: feature network (ResNet-FPN), RPN, perception heads and matching network.

Input: float32 [B, 3, H, W], RGB, values 0..255, already letterboxed to the configured square
`input_size` (see df2infer_export.data.letterbox); mean/std normalisation happens inside (ImageNet for
this project's models and torchvision's; an imported detectron2 model flips to BGR and uses its own
pixel mean/std: config keys input_channels, pixel_mean, pixel_std).
Training: `model(images, targets)` -> dict of losses. Eval: `model(images)` -> list of dicts per
image: boxes [N, 4] (x1, y1, x2, y2, input pixels), scores [N], labels [N] (1..13), masks [N, M, M]
(probability of the predicted class, box-relative), landmark_logits [N, 39, K, K] (the predicted
class's landmark slots, channels >= its count are padding), embeddings [N, 256] (L2 norm = sqrt(256) = 16).

Attributes for a deploy graph:
  normalize(images)                        -> (images[, BGR] - mean) / std
  backbone(x)                              -> OrderedDict '0'.. + 'pool' of [B, fpn_channels, h, w]
  rpn.head([feature maps])                 -> objectness list, bbox delta list (3 anchors/location)
  rpn.anchor_generator, rpn.box_coder      (BoxCoder weights 1, 1, 1, 1)
  roi_heads.box_roi_pool / mask_roi_pool / keypoint_roi_pool / match_roi_pool (MultiScaleRoIAlign,
      sampling_ratio 2, featmap names '0'..'3' without 'pool', canonical scale 224 level 4)
  roi_heads.box_head(pooled) -> roi_heads.box_predictor(...) -> (cls_logits [R, 14], deltas [R, 56])
      decoded with roi_heads.box_coder (weights 10, 10, 5, 5)
  roi_heads.mask_logits(pooled)            -> [R, 13, M, M]   (channel = label - 1)
  roi_heads.landmark_logits(pooled, labels)-> [R, 39, K, K]
  roi_heads.embed(pooled)                  -> [R, 256]
  roi_heads.similarity.fc                  Linear(256, 2) on (a - b) ** 2
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops

from .backbone import build_backbone

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class OffsetAnchorGenerator(AnchorGenerator):
    """detectron2's DefaultAnchorGenerator on torchvision's: cell anchors not rounded, centers shifted
    by `offset` * stride, and the strides of the FPN levels fixed (2**k) instead of torchvision's
    image_size // grid_size (which is 61 rather than 64 for a 13-cell level of an 800 px image)."""

    def __init__(self, sizes, aspect_ratios, offset: float = 0.0, strides: list[int] | None = None):
        super().__init__(sizes, aspect_ratios)
        self.offset = float(offset)
        self.fixed_strides = strides
        self.cell_anchors = [self._unrounded(size, ar) for size, ar in zip(sizes, aspect_ratios)]

    @staticmethod
    def _unrounded(scales, aspect_ratios) -> torch.Tensor:
        scales_t = torch.as_tensor(scales, dtype=torch.float32)
        ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales_t[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales_t[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def grid_anchors(self, grid_sizes, strides):
        if self.fixed_strides is not None:
            strides = [torch.tensor([s, s], dtype=torch.int64, device=st[0].device) for s, st in zip(self.fixed_strides, strides)]
        out = super().grid_anchors(grid_sizes, strides)
        return [a + self.offset * torch.stack([s[1], s[0], s[1], s[0]]).to(a) for a, s in zip(out, strides)]


class LogitRankRPN(RegionProposalNetwork):
    """detectron2's find_top_rpn_proposals on torchvision's RPN: per level the top-k logits, boxes clipped,
    non-empty ones kept (w, h > 0), NMS per level and the post-NMS top-k ranked by the objectness *logits*.
    torchvision ranks their sigmoid, which is 1.0 in float32 for every logit above ~16.6: tied scores, and
    NMS then keeps another set than detectron2 does. Scores returned are the sigmoid, as torchvision's."""

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        n = proposals.shape[0]
        objectness = objectness.detach().reshape(n, -1)
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64, device=proposals.device) for i, k in enumerate(num_anchors_per_level)])
        top = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(n, device=proposals.device)[:, None]
        objectness, levels, proposals = objectness[rows, top], levels[top], proposals[rows, top]
        final_boxes, final_scores = [], []
        for boxes, logits, lvl, shape in zip(proposals, objectness, levels, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            keep = (w > self.min_size) & (h > self.min_size)  # detectron2's nonempty(threshold=min_size)
            boxes, logits, lvl = boxes[keep], logits[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, logits, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(torch.sigmoid(logits[keep]))
        return final_boxes, final_scores


class MatchRCNN(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        from .roi_heads import MatchRoIHeads

        self.cfg = dict(cfg)
        self.register_buffer(
            "pixel_mean", torch.tensor(cfg.get("pixel_mean", MEAN), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("pixel_std", torch.tensor(cfg.get("pixel_std", STD), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.bgr = cfg.get("input_channels", "rgb") == "bgr"
        self.backbone = build_backbone(cfg)
        c = cfg["fpn_channels"]
        n_levels = len(cfg["returned_layers"]) + 1
        sizes = list(cfg["anchor_sizes"])
        if len(sizes) != n_levels:
            raise ValueError(f"model.anchor_sizes has {len(sizes)} entries but the FPN has {n_levels} levels")
        if cfg.get("anchor_rounding", True):
            anchors = AnchorGenerator(tuple((s,) for s in sizes), (tuple(cfg["aspect_ratios"]),) * n_levels)
        else:
            first = 2 ** (min(cfg["returned_layers"]) + 1)
            strides = [first * 2**i for i in range(n_levels)]
            anchors = OffsetAnchorGenerator(
                tuple((s,) for s in sizes), (tuple(cfg["aspect_ratios"]),) * n_levels, cfg.get("anchor_offset", 0.0), strides
            )
        rpn = LogitRankRPN if cfg.get("rpn_rank_by_logit", False) else RegionProposalNetwork
        self.rpn = rpn(
            anchors,
            RPNHead(c, len(cfg["aspect_ratios"]), conv_depth=int(cfg.get("rpn_conv_depth", 1))),
            0.7,
            0.3,
            cfg["rpn_batch_size_per_image"],
            0.5,
            dict(training=cfg["rpn_pre_nms_top_n_train"], testing=cfg["rpn_pre_nms_top_n_test"]),
            dict(training=cfg["rpn_post_nms_top_n_train"], testing=cfg["rpn_post_nms_top_n_test"]),
            cfg["rpn_nms_thresh"],
        )
        self.rpn.min_size = float(cfg.get("rpn_min_size", 1e-3))
        self.roi_heads = MatchRoIHeads(cfg, c, [str(i) for i in range(n_levels - 1)])

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this model has, of ("mask", "landmark", "match")."""
        return tuple(self.cfg.get("heads", ("mask", "landmark", "match")))

    @property
    def input_size(self) -> int:
        return int(self.cfg["input_size"])

    @property
    def heatmap_size(self) -> int:
        return int(self.cfg["landmark_pool"] * 2 ** self.cfg["landmark_deconvs"])

    @property
    def mask_size(self) -> int:
        return int(self.cfg["mask_pool"] * 2)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        if self.bgr:  # the graph input is RGB; a BGR-trained network (detectron2) gets its channel order here
            images = images.index_select(1, torch.tensor([2, 1, 0], device=images.device))
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images, targets=None):
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        if self.training and targets is None:
            raise ValueError("MatchRCNN in training mode needs targets")
        h, w = images.shape[-2:]
        features = self.backbone(self.normalize(images))
        il = ImageList(images, [(int(h), int(w))] * images.shape[0])
        proposals, rpn_losses = self.rpn(il, features, targets)
        feats = OrderedDict((k, v) for k, v in features.items())
        dets, head_losses = self.roi_heads(feats, proposals, il.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **head_losses}
        return dets


def build_model(cfg_model: dict) -> MatchRCNN:
    return MatchRCNN(cfg_model)
