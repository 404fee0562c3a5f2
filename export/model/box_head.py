"""Box head: two fc layers (torchvision TwoMLPHead) + class scores (14 = background + 13) and
class-specific box deltas (14 * 4), decoded with BoxCoder weights (10, 10, 5, 5).

    feats = box_head(pooled)            # pooled [R, C, P, P] -> [R, box_fc]
    cls_logits, deltas = box_predictor(feats)   # [R, 14], [R, 56]
"""

from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def build_box_head(in_channels: int, pool: int, fc: int, num_classes: int = 14):
    return TwoMLPHead(in_channels * pool * pool, fc), FastRCNNPredictor(fc, num_classes)
