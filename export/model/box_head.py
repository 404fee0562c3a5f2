"""Box head: two fc layers (torchvision TwoMLPHead) + class scores (14 = background + 13) and
class-specific box deltas (14 * 4), decoded with BoxCoder weights (10, 10, 5, 5).

    feats = box_head(pooled)            # pooled [R, C, P, P] -> [R, box_fc]
    cls_logits, deltas = box_predictor(feats)   # [R, 14], [R, 56]

`kind` conv4_fc_bn is torchvision's v2 box head (FastRCNNConvFCHead: 4 conv 3x3 + BatchNorm, 1 fc).
"""

from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def build_box_head(in_channels: int, pool: int, fc: int, num_classes: int = 14, kind: str = "mlp"):
    if kind == "mlp":
        head = TwoMLPHead(in_channels * pool * pool, fc)
    elif kind == "conv4_fc_bn":
        head = FastRCNNConvFCHead((in_channels, pool, pool), [256, 256, 256, 256], [fc], norm_layer=nn.BatchNorm2d)
    else:
        raise ValueError(f"model.box_head {kind!r}: expected mlp or conv4_fc_bn")
    return head, FastRCNNPredictor(fc, num_classes)
