"""Mask head: 4 conv 3x3 (+ReLU) at the RoI resolution, a 2x2 stride-2 deconv, and a 1x1 conv to
13 class-specific mask logits (channel c-1 belongs to category c), Mask R-CNN style.

    logits = mask_predictor(mask_head(pooled))   # [R, C, P, P] -> [R, 13, 2P, 2P]

Parameter names follow torchvision's MaskRCNNHeads / MaskRCNNPredictor (conv5_mask,
mask_fcn_logits) so the conv stack and deconv of a torchvision Mask R-CNN import.

`norm` bn is torchvision's v2 mask head (BatchNorm after each conv); num_classes 1 is a class-agnostic
mask (detectron2 CLS_AGNOSTIC_MASK), its one channel serving every category.
"""

from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor


def build_mask_head(in_channels: int, channels: int, convs: int, num_classes: int = 13, norm: str | None = None):
    head = MaskRCNNHeads(in_channels, [channels] * convs, dilation=1, norm_layer=nn.BatchNorm2d if norm == "bn" else None)
    return head, MaskRCNNPredictor(channels, channels, num_classes)
