"""Landmark head, Keypoint R-CNN style: conv 3x3 stack (torchvision KeypointRCNNHeads, so its
weights import), then `deconvs` 4x4 stride-2 transposed convs (each + ReLU) to the heatmap
resolution K = P * 2**deconvs, then a class-specific 1x1 scorer with one row per landmark slot
(294 = all 13 categories' landmarks).

    feats = keypoint_head(pooled)                        # [R, C, P, P] -> [R, C', P, P]
    all_logits = keypoint_predictor(feats)               # [R, 294, K, K]
    own = keypoint_predictor(feats, labels)              # [R, 39, K, K]: the category's slots,
                                                         # channels >= its landmark count are 0
The gathered form computes only the 39 rows a detection needs (a MatMul over gathered 1x1
weights) and is what training and the deploy graph use. Logits are per-channel spatial
softmax logits (cross-entropy over the K*K positions, torchvision keypointrcnn_loss).

DeconvUpsamplePredictor is torchvision's and detectron2's keypoint predictor (a 4x4 stride-2
transposed conv to all 294 slots, `kps_score_lowres`, then bilinear x2), for imported checkpoints:
the same call forms, the category's slots gathered after the deconv and before the upsampling
(bilinear upsampling works channel by channel, so gathering first gives the same numbers).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads

from df2infer.data import spec


def slot_table() -> torch.Tensor:
    """int64 [14, 39]: slot index of landmark j of category c; 294 (a zero row) where j >= count."""
    t = torch.full((spec.NUM_CATEGORIES + 1, spec.MAX_CATEGORY_LANDMARKS), spec.NUM_LANDMARKS, dtype=torch.int64)
    for c in spec.categories():
        t[c.id, : c.num_landmarks] = torch.arange(c.slot_start, c.slot_end)
    return t


class LandmarkPredictor(nn.Module):
    def __init__(self, in_channels: int, deconvs: int = 1, num_slots: int = spec.NUM_LANDMARKS):
        super().__init__()
        layers = []
        for _ in range(deconvs):
            layers += [nn.ConvTranspose2d(in_channels, in_channels, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*layers)
        self.score_weight = nn.Parameter(torch.randn(num_slots, in_channels) * 0.001)
        self.score_bias = nn.Parameter(torch.zeros(num_slots))
        self.register_buffer("slots", slot_table(), persistent=False)
        for m in self.upsample.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.upsample(x)
        r, c, h, w = x.shape
        if labels is None:
            return torch.einsum("rchw,kc->rkhw", x, self.score_weight) + self.score_bias[None, :, None, None]
        w_ext = torch.cat([self.score_weight, self.score_weight.new_zeros(1, c)], 0)
        b_ext = torch.cat([self.score_bias, self.score_bias.new_zeros(1)], 0)
        idx = self.slots[labels]  # [R, 39]
        out = torch.bmm(w_ext[idx], x.reshape(r, c, h * w)) + b_ext[idx][:, :, None]
        return out.reshape(r, idx.shape[1], h, w)


class DeconvUpsamplePredictor(nn.Module):
    def __init__(self, in_channels: int, num_slots: int = spec.NUM_LANDMARKS):
        super().__init__()
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_slots, 4, stride=2, padding=1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.kps_score_lowres.bias)
        self.register_buffer("slots", slot_table(), persistent=False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.kps_score_lowres(x)
        if labels is not None:
            x = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2], x.shape[3])], 1)  # slot 294: the zero padding row
            idx = self.slots[labels]  # [R, 39]
            x = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3]))
        return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def build_landmark_head(in_channels: int, channels: int, convs: int, deconvs: int, predictor: str = "slots"):
    head = KeypointRCNNHeads(in_channels, [channels] * convs)
    if predictor == "deconv_upsample":
        return head, DeconvUpsamplePredictor(channels)
    if predictor != "slots":
        raise ValueError(f"model.landmark_predictor {predictor!r}: expected slots or deconv_upsample")
    return head, LandmarkPredictor(channels, deconvs)
